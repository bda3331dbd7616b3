"""Canon reproduction on held-out scenes: can the character say what it says in its canon?

A held-out turn is a line of the character that answers someone else in a canon scene.
The lines before it in that scene become the conversation (the last one is the line the
character answers, the others the history); the scene is kept out of retrieval, and the
reply is scored against the original line (embedding cosine, ROUGE-L, chrF).

Three conditions, on the same turns with the same sampling seed:

    canon     persona + retrieved canon (the scene held out): what rolecast does
    persona   persona only, no canon (lore entries, part of the character, stay)
    bare      no persona and no canon: only the standing instruction to speak as NAME

A turn is eligible only if its line occurs nowhere else in the character (other lines,
persona, lore, the prompt's fixed instructions) and is at least ``MIN_TARGET_CHARS`` long,
so a prompt that contains it can only be a leak: ``check_leak`` raises ``LeakError`` for
any prompt that holds the held-out scene or the line itself.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..backends.base import LLM, GenerationParams
from ..character.model import Character, Line
from ..errors import InputError, NoReplyError, RolecastError
from ..prompt.assemble import Order, Turn, canon_block, persona_text, reply_rules
from . import metrics
from .metrics import normalise
from .report import Cache, to_jsonable
from .runner import Progress, fresh_session, item_seed, run_items

if TYPE_CHECKING:  # pragma: no cover
    from ..retrieval.embedders import Embedder
    from ..retrieval.hybrid import CanonIndex, Mode
    from ..session import Session, TurnReport
    from ..training.adapter import Adapter

log = logging.getLogger(__name__)

CONDITIONS: tuple[str, ...] = ("canon", "persona", "bare")
METRICS: tuple[str, ...] = ("cosine", "rouge_l", "chrf")
MIN_TARGET_CHARS = 4  # shorter lines ("Yes.", "嗯") recur everywhere and score as noise
MAX_CONTEXT_LINES = 24  # preceding lines of the scene given as the conversation, at most
DEFAULT_PARAMS = GenerationParams(max_tokens=96, temperature=0.7)


class LeakError(RolecastError):
    """A held-out scene or line reached the prompt: the evaluation would be meaningless."""


@dataclass(frozen=True)
class HeldOut:
    """One held-out turn: the character's line ``target`` at ``index`` in scene
    ``scene_id``, and the lines before it in that scene (``context``, oldest first)."""

    scene_id: str
    index: int
    context: tuple[Line, ...]
    target: str

    def key(self) -> dict[str, Any]:
        return {"scene": self.scene_id, "index": self.index, "target": self.target}

    @property
    def line(self) -> Line:
        """The line the character answers (the last of the context)."""
        return self.context[-1]

    def history(self) -> list[Turn]:
        return [Turn(ln.speaker, ln.text) for ln in self.context[:-1]]


def candidate_turns(character: Character, scenes: Collection[str] | None = None) -> list[HeldOut]:
    """Every line of the character that answers another speaker: the nearest spoken line
    before it in its scene is someone else's (narration may come between). ``scenes``: only
    in these scenes (a dataset's held-out ones)."""
    out: list[HeldOut] = []
    for scene in character.scenes:
        if scenes is not None and scene.id not in scenes:
            continue
        lines = scene.lines
        for i, ln in enumerate(lines):
            if i == 0 or not character.is_self(ln.speaker) or not ln.text.strip():
                continue
            before = next(
                (p for p in reversed(lines[:i]) if not character.is_narrator(p.speaker)), None
            )
            if before is None or character.is_self(before.speaker):
                continue
            context = lines[max(0, i - MAX_CONTEXT_LINES) : i]
            out.append(HeldOut(scene.id, i, tuple(context), ln.text.strip()))
    return out


class _Haystack:
    """Everything a prompt may show besides the held-out scene's own lines, normalised,
    to tell whether a line occurs anywhere but in its own place."""

    def __init__(self, character: Character) -> None:
        parts = [normalise(ln.text) for s in character.scenes for ln in s.lines]
        parts += [normalise(persona_text(character))]
        parts += [normalise(e.content) for e in character.lore]
        parts += [normalise(reply_rules(character)), normalise(canon_block(character, ["x"]))]
        self.text = "\0".join(parts)

    def unique(self, needle: str) -> bool:
        n = normalise(needle)
        return len(n) >= MIN_TARGET_CHARS and self.text.count(n) == 1


def sample_turns(
    character: Character, n: int, seed: int = 0, scenes: Collection[str] | None = None
) -> list[HeldOut]:
    """``n`` held-out turns drawn with ``seed`` (the same seed, the same turns); ``scenes``:
    from these scenes only."""
    if n < 1:
        raise InputError(f"--n must be at least 1, not {n}")
    candidates = candidate_turns(character, scenes)
    if not candidates and scenes is not None:
        raise InputError(
            f"none of the {len(scenes)} held-out scenes has a line of {character.name} that "
            f"answers another speaker: nothing to evaluate on (hold out a larger share)"
        )
    if not candidates:
        raise InputError(
            f"{character.name} ({character.id}) has no multi-speaker scene: no line of "
            f"{character.name} answers another speaker, so there is nothing to hold out"
        )
    order = list(range(len(candidates)))
    random.Random(seed).shuffle(order)
    haystack = _Haystack(character)
    picked: list[HeldOut] = []
    for i in order:
        if haystack.unique(candidates[i].target):
            picked.append(candidates[i])
            if len(picked) == n:
                return picked
    raise InputError(
        f"--n {n} is more than the {len(picked)} held-out turns {character.name} has "
        + ("in the held-out scenes " if scenes is not None else "")
        + f"({len(candidates)} lines answer another speaker; {len(candidates) - len(picked)} "
        f"are shorter than {MIN_TARGET_CHARS} characters or occur elsewhere in the character)"
    )


def check_leak(item: HeldOut, report: TurnReport) -> None:
    """Raise ``LeakError`` if the prompt of ``report`` holds the held-out scene or line."""
    ids = {h.scene.id for h in report.hits} | set(report.assembly.scene_ids)
    if item.scene_id in ids:
        raise LeakError(
            f"held-out scene {item.scene_id!r} was retrieved for its own turn: "
            "retrieval did not honour the exclusion"
        )
    needle = normalise(item.target)
    for hit in report.hits:
        if any(needle in normalise(ln.text) for ln in hit.scene.lines):
            raise LeakError(
                f"retrieved scene {hit.scene.id!r} contains the held-out line of "
                f"scene {item.scene_id!r} (index {item.index})"
            )
    for message in report.assembly.messages:
        if needle in normalise(message["content"]):
            raise LeakError(
                f"the {message['role']} message of the prompt contains the held-out line of "
                f"scene {item.scene_id!r} (index {item.index})"
            )


def bare_character(character: Character) -> Character:
    """The character reduced to its name: no persona, no canon, no lore (the prompt keeps
    only the standing instruction to speak as NAME)."""
    return replace(character, persona="", scenes=[], lore=[], greetings=[], description="")


def condition_session(
    condition: str,
    character: Character,
    llm: LLM,
    index: CanonIndex | None = None,
    params: GenerationParams = DEFAULT_PARAMS,
    mode: Mode = "hybrid",
    order: Order | None = None,
) -> Session:
    """A session for one condition, before any turn: the prototype of every item's. The
    prompt order is the backend's, as in `rolecast chat` (``order`` overrides it)."""
    from ..session import ReplyCleaner, Session

    if condition not in CONDITIONS:
        raise InputError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}")
    if condition == "canon" and index is None:
        raise InputError("the canon condition needs the character's index")
    who = bare_character(character) if condition == "bare" else character
    session = Session(
        who,
        index if condition == "canon" else None,
        llm,
        params=params,
        retrieval_mode=mode,
        order=order or llm.prompt_order,
    )
    session.cleaner = ReplyCleaner.for_character(character)  # same clean-up in every condition
    return session


def prepare_turn(
    prototype: Session, item: HeldOut, seed: int = 0, exclude: Collection[str] = ()
) -> tuple[Session, str, TurnReport]:
    """A fresh session like ``prototype`` at the point of the turn (the scene's earlier lines
    as its history, sampled with the item's seed), the role that says the line, and the
    prompt assembled for it. Neither the item's scene nor ``exclude`` is retrieved."""
    session = fresh_session(prototype, item_seed(seed, item.scene_id, item.index), item.history())
    role = item.line.speaker or next(iter(session.character.narrators), "narrator")
    report = session.prepare(item.line.text, role, exclude={item.scene_id, *exclude})
    return session, role, report


def generate(prototype: Session, item: HeldOut, seed: int = 0) -> dict[str, Any]:
    """The reply of the prototype's condition to one held-out turn, leak-checked first."""
    session, role, report = prepare_turn(prototype, item, seed)
    check_leak(item, report)
    try:
        for _ in session.say(item.line.text, role, report=report):
            pass
    except NoReplyError:  # no answer is an empty reply: it scores 0, as it should
        report.reply = ""
    return {
        "reply": report.reply,
        "scenes": list(report.assembly.scene_ids),
        "prompt_tokens": report.assembly.parts.get("total", 0),
    }


@dataclass
class CanonResult:
    items: list[HeldOut]
    replies: dict[str, list[dict[str, Any]]]  # condition -> one dict per item
    scores: dict[str, dict[str, list[float]]]  # condition -> metric -> one score per item
    summary: dict[str, dict[str, metrics.Interval]]  # condition -> metric -> mean and CI
    differences: dict[str, dict[str, metrics.Interval]]  # "a - b" -> metric -> paired CI

    def to_dict(self) -> dict[str, Any]:
        conditions = list(self.replies)
        items = []
        for i, item in enumerate(self.items):
            entry: dict[str, Any] = {
                **item.key(),
                "context": [f"{ln.speaker}: {ln.text}" for ln in item.context],
                "replies": {},
            }
            for c in conditions:
                entry["replies"][c] = {
                    **self.replies[c][i],
                    **{m: round(self.scores[c][m][i], 6) for m in METRICS},
                }
            items.append(entry)
        data: dict[str, Any] = to_jsonable(
            {
                "conditions": conditions,
                "metrics": list(METRICS),
                "summary": self.summary,
                "differences": self.differences,
                "items": items,
            }
        )
        return data


def score_replies(
    items: Sequence[HeldOut], replies: Sequence[str], embedder: Embedder
) -> dict[str, list[float]]:
    targets = [it.target for it in items]
    return {
        "cosine": [float(x) for x in metrics.cosines(embedder, list(replies), targets)],
        "rouge_l": [metrics.rouge_l(r, t) for r, t in zip(replies, targets, strict=True)],
        "chrf": [metrics.chrf(r, t) for r, t in zip(replies, targets, strict=True)],
    }


def summarise(
    scores: Mapping[str, Mapping[str, Sequence[float]]], seed: int = 0
) -> tuple[dict[str, dict[str, metrics.Interval]], dict[str, dict[str, metrics.Interval]]]:
    """Per-condition means and paired differences (earlier condition minus later, in
    ``CONDITIONS`` order), each with a bootstrap interval."""
    conditions = list(scores)
    summary = {
        c: {m: metrics.mean_interval(scores[c][m], seed=seed) for m in scores[c]}
        for c in conditions
    }
    differences: dict[str, dict[str, metrics.Interval]] = {}
    for i, a in enumerate(conditions):
        for b in conditions[i + 1 :]:
            differences[f"{a} - {b}"] = {
                m: metrics.paired_difference(scores[a][m], scores[b][m], seed=seed)
                for m in scores[a]
            }
    return summary, differences


TUNED = "+lora"  # the suffix of a condition answered by the tuned model


def check_tuned(character: Character, adapter: Adapter) -> list[str]:
    """The scenes a tuned model may be scored on: its dataset's held-out ones, when the
    dataset was this character's; anything else is refused."""
    trained_on = adapter.manifest.character.get("id")
    if trained_on != character.id:
        raise InputError(
            f"the adapter in {adapter.folder} was trained on a dataset of {trained_on!r}, "
            f"not of {character.id!r}: evaluate it on its own character"
        )
    if not adapter.held_out:
        raise InputError(
            f"the adapter in {adapter.folder} was trained with no held-out scenes: every "
            f"scene of {character.name} was training data, so none can score it honestly"
        )
    return adapter.held_out


def check_conditions(conditions: Sequence[str]) -> list[str]:
    """The conditions in their fixed order (canon first), or a clear error."""
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown or not conditions:
        raise InputError(
            f"unknown condition(s) {', '.join(unknown) or '(none given)'}; "
            f"known: {', '.join(CONDITIONS)}"
        )
    return [c for c in CONDITIONS if c in conditions]


def canon_scope(
    character: Character,
    llm: LLM,
    params: GenerationParams,
    embedder: str,
    mode: Mode = "hybrid",
    order: Order | None = None,
    tuned: LLM | None = None,
) -> dict[str, Any]:
    """What a cached reply depends on besides its turn: the character, backend, model (and
    the tuned one), parameters, embedder, retrieval mode and prompt order."""
    order = order or llm.prompt_order
    extra = {"tuned": tuned.model} if tuned is not None else {}
    return Cache.scope_for(
        "canon", character, llm, params, embedder=embedder, mode=mode, order=order, **extra
    )


def run_canon_eval(
    character: Character,
    llm: LLM,
    embedder: Embedder,
    index: CanonIndex | None = None,
    *,
    n: int = 20,
    seed: int = 0,
    conditions: Sequence[str] = CONDITIONS,
    params: GenerationParams = DEFAULT_PARAMS,
    mode: Mode = "hybrid",
    order: Order | None = None,
    cache: Cache | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    tuned: LLM | None = None,
    scenes: Collection[str] | None = None,
) -> CanonResult:
    """Generate and score ``n`` held-out turns under each condition.

    ``embedder`` scores the cosine (and, through ``index``, retrieves for the canon
    condition). ``cache`` keys are (condition, turn) within the cache's scope, so the scope
    should name the character, backend, model and ``params`` (``Cache.scope_for``).
    ``tuned``: the same model with a LoRA, answering the same turns with the same seeds
    under each condition (named ``<condition>+lora``, listed first, so the paired
    differences read tuned minus base); ``scenes``: turns from these scenes only.
    """
    conditions = check_conditions(conditions)
    items = sample_turns(character, n, seed, scenes)
    prototypes = {
        c: condition_session(c, character, llm, index, params, mode, order) for c in conditions
    }
    if tuned is not None:
        prototypes = {
            **{
                c + TUNED: condition_session(c, character, tuned, index, params, mode, order)
                for c in conditions
            },
            **prototypes,
        }
    conditions = list(prototypes)
    jobs = [(c, i) for c in conditions for i in range(len(items))]
    values = run_items(
        jobs,
        lambda job: generate(prototypes[job[0]], items[job[1]], seed),
        key=lambda job: {"condition": job[0], "mode": mode, **items[job[1]].key()},
        cache=cache,
        workers=workers,
        progress=progress,
    )
    replies: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions}
    for (c, _), value in zip(jobs, values, strict=True):
        replies[c].append(value)
    scores = {
        c: score_replies(items, [r["reply"] for r in replies[c]], embedder) for c in conditions
    }
    summary, differences = summarise(scores, seed)
    return CanonResult(items, replies, scores, summary, differences)


def canon_markdown(
    result: CanonResult, head: Mapping[str, Any], note: str, figures: Sequence[str]
) -> str:
    """The Markdown report of a canon eval (``head`` is the results' header and settings)."""
    from .report import markdown_table, md_escape

    ch = head["character"]
    lines = [
        f"# Canon reproduction: {ch['name']} ({ch['id']})",
        "",
        note,
        "",
        f"{len(result.items)} held-out turns (seed {head.get('seed')}), each answered under "
        f"{len(result.replies)} conditions; embedder `{head.get('embedder')}` for the cosine "
        f"and for retrieval (mode `{head.get('mode')}`). Means with 95 % bootstrap intervals.",
        "",
        "- **canon**: persona and retrieved canon, the held-out scene excluded",
        "- **persona**: persona only, no canon",
        "- **bare**: no persona, no canon, only the instruction to speak as the character",
        *(
            [
                f"- **…{TUNED}**: the same, answered by the model with the LoRA adapter "
                f"`{head['tuned']}`, on scenes its dataset held out"
            ]
            if head.get("tuned")
            else []
        ),
        "",
        "## Scores",
        "",
        markdown_table(
            ["condition", *METRICS],
            [[c, *(str(result.summary[c][m]) for m in METRICS)] for c in result.summary],
        ),
        "",
    ]
    if result.differences:
        lines += [
            "## Paired differences",
            "",
            "Mean of the per-turn difference; an interval that excludes 0 is a difference "
            "this sample supports.",
            "",
            markdown_table(
                ["difference", *METRICS],
                [[d, *(str(iv[m]) for m in METRICS)] for d, iv in result.differences.items()],
            ),
            "",
        ]
    for name in figures:
        lines += [f"![{name}]({name}.png)", ""]
    lines += ["## Examples", ""]
    for i, item in enumerate(result.items[:5]):
        lines.append(
            f"- scene `{item.scene_id}`, {md_escape(item.line.speaker)}: "
            f"{md_escape(item.line.text)}"
        )
        lines.append(f"  - original: {md_escape(item.target)}")
        for c, rs in result.replies.items():
            lines.append(f"  - {c}: {md_escape(rs[i]['reply']) or '(empty)'}")
    return "\n".join(lines)


def canon_figures(result: CanonResult) -> dict[str, Any]:
    from .report import interval_chart

    figs: dict[str, Any] = {
        "scores": interval_chart(
            "Reply vs original line, by condition",
            list(METRICS),
            {c: [result.summary[c][m] for m in METRICS] for c in result.summary},
            ylabel="score (95 % CI)",
        )
    }
    if result.differences:
        figs["differences"] = interval_chart(
            "Paired differences between conditions",
            list(METRICS),
            {d: [iv[m] for m in METRICS] for d, iv in result.differences.items()},
            ylabel="mean difference (95 % CI)",
            zero_line=True,
        )
    return figs


def summary_lines(result: CanonResult) -> list[str]:
    """What `rolecast eval canon` prints: each condition's mean of each metric."""
    return [
        f"{c:13s} " + "  ".join(f"{m} {scores[m]}" for m in METRICS)
        for c, scores in result.summary.items()
    ]
