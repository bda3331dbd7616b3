"""Grow a character's canon into a training set: canon samples, then lines people say to the
character (asked of a backend in requests of ``PER_REQUEST``), each answered through the
character's own Session so that a sample looks exactly like a real turn, each reply checked
by the conversation gate's checks and the in-character rules.

Every backend call is cached by request or line within the scope (character, backend,
model, seed, settings): an interrupted run goes on where it stopped and a rerun makes no
call. Requests are numbered and their lines kept in that order, so a run with 4 requests in
flight gives the same dataset as a run with one.
"""

from __future__ import annotations

import math
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from ..backends.base import GenerationParams
from ..character.model import Character
from ..errors import InputError, NoReplyError
from ..eval.canon import candidate_turns
from ..eval.metrics import normalise
from ..eval.probes import Probe, rule_violations
from ..eval.report import backend_info, character_digest, reply_code_digest, to_jsonable
from ..eval.runner import Progress, fresh_session, item_seed, run_items
from ..eval.smoke import SmokeChecker
from .dataset import Manifest, Sample
from .questions import (
    DUPLICATE_COSINE,
    PER_REQUEST,
    Asked,
    Keeper,
    example_pairs,
    followup_messages,
    next_line,
    parse_lines,
    question_messages,
)
from .samples import canon_samples, sample_id
from .split import DEFAULT_SHARE, held_out_scenes

if TYPE_CHECKING:
    from ..eval.report import Cache
    from ..retrieval.embedders import Embedder
    from ..session import Session

QUESTION_PARAMS = GenerationParams(max_tokens=480, temperature=1.0, top_p=0.95)
REQUESTS_PER_LINE = 0.3  # requests made at most per line wanted (10 asked, 3.3 kept at worst)
_PLAIN = Probe("augment", "meta", "", "")  # a line that probes nothing: the general rules only


@dataclass(frozen=True)
class Settings:
    """What a dataset is made with (written into its manifest and its cache scope)."""

    n: int = 100  # generated samples wanted
    seed: int = 0
    held_out: float = DEFAULT_SHARE
    canon: bool = True  # the canon's own lines as samples too
    per_request: int = PER_REQUEST
    continued: float = 0.2  # share of generated lines whose conversation goes on
    turns: int = 3  # turns of such a conversation at most, the first line's included
    duplicate_cosine: float = DUPLICATE_COSINE  # a line this close to a kept one is dropped

    def check(self) -> None:
        if self.n < 0:
            raise InputError(f"-n must not be negative, not {self.n}")
        if not 0 <= self.continued <= 1:
            raise InputError(f"--continued must be a share from 0 to 1, not {self.continued}")
        if not 1 <= self.turns <= 10:
            raise InputError(f"--turns must be 1 to 10, not {self.turns}")
        if not 0 < self.duplicate_cosine <= 1:
            raise InputError(
                f"--duplicate-cosine must be above 0 and at most 1, not {self.duplicate_cosine}"
            )
        if not 1 <= self.per_request <= 50:
            raise InputError(f"lines per request must be 1 to 50, not {self.per_request}")


def augment_scope(prototype: Session, settings: Settings) -> dict[str, Any]:
    """What every cached call depends on besides its own key."""
    return {
        "eval": "augment",
        "code": reply_code_digest(),
        "character": character_digest(prototype.character),
        **backend_info(prototype.llm),
        "params": to_jsonable(prototype.params),
        "question_params": to_jsonable(QUESTION_PARAMS),
        "order": prototype.order,
        "embedder": prototype.index.embedder.name if prototype.index else None,
        "seed": settings.seed,
        "held_out": settings.held_out,
        "per_request": settings.per_request,
        "continued": settings.continued,
        "turns": settings.turns,
    }


_NAME_ONLY = re.compile(r"^\s*[^\s:：「」]{1,16}\s*[:：]\s*$")  # "王小川:" and nothing said


def filter_reply(
    checker: SmokeChecker,
    character: Character,
    line: str,
    reply: str,
    earlier: Sequence[str] = (),
) -> list[str]:
    """The reasons a reply is not fit to train on (empty when it is); ``earlier``: the
    character's replies before it in the same conversation."""
    if _NAME_ONLY.match(reply):
        return ["name only"]
    if reply.strip() and normalise(reply) in {normalise(e) for e in earlier}:
        return ["repeats itself"]
    found = list(checker.check(reply, line))
    for violation in rule_violations(reply, character, _PLAIN):
        rule = violation.split(":", 1)[0]
        if rule not in found:
            found.append(rule)
    return found


def augment(
    prototype: Session,
    settings: Settings = Settings(),
    *,
    cache: Cache | None = None,
    workers: int = 1,
    progress: Callable[[str], Progress | None] | None = None,
) -> tuple[Manifest, list[Sample]]:
    """The dataset: its manifest (held-out scenes, settings, drops per reason) and samples."""
    settings.check()
    character = prototype.character
    llm = prototype.llm
    held = frozenset(held_out_scenes(character, settings.held_out, settings.seed))
    samples = canon_samples(prototype, held, settings.seed) if settings.canon else []
    if prototype.index is not None:
        embedder = prototype.index.embedder
    else:
        from ..retrieval.embedders import get_embedder

        embedder = get_embedder("use")
    keeper = Keeper(embedder, character, settings.duplicate_cosine, expected=settings.n)
    turns = candidate_turns(character)

    def ask(i: int) -> dict[str, str]:
        rng = random.Random(item_seed(settings.seed, "examples", i))
        pairs = example_pairs(character, rng=rng, held_out=held, turns=turns)
        messages = question_messages(character, pairs, settings.per_request)
        params = replace(QUESTION_PARAMS, seed=item_seed(settings.seed, "questions", i))
        return {"text": "".join(llm.stream(messages, params))}

    limit = max(1, math.ceil(settings.n * REQUESTS_PER_LINE)) if settings.n else 0
    made = 0
    asked_progress = progress("asking") if progress else None
    while len(keeper.kept) < settings.n and made < limit:
        short = settings.n - len(keeper.kept)
        batch = list(range(made, min(limit, made + max(workers, math.ceil(short / 3)))))
        answers = run_items(
            batch,
            ask,
            key=lambda i: {"phase": "questions", "request": i},
            cache=cache,
            workers=workers,
            progress=asked_progress,
        )  # in request order, whatever order they came back in: the same lines kept
        keeper.keep([a for value in answers for a in parse_lines(value["text"], character)])
        made = batch[-1] + 1
    lines = keeper.kept[: settings.n]
    checker = SmokeChecker(character)
    dropped: Counter[str] = Counter(keeper.dropped)
    if len(lines) < settings.n:
        dropped["not enough new lines"] += settings.n - len(lines)

    prime = _QueryPrimer(embedder, lines, keeper.vectors[: len(lines)])
    texts: dict[str, str] = {}  # one copy of each message text: the persona and the canon

    def shared(text: str) -> str:  # blocks repeat across rows (tens of thousands of them)
        return texts.setdefault(text, text)

    def answer(a: Asked) -> dict[str, Any]:
        """The conversation that ``a`` starts: one turn, or (for a ``continued`` share of
        lines, chosen by seed) up to ``turns``, the speaker's next lines asked of the
        backend; it ends early at a reply unfit to train on."""
        prime(a)
        seed = item_seed(settings.seed, "reply", a.speaker, a.text)
        session = fresh_session(prototype, seed)
        goes_on = random.Random(item_seed(settings.seed, "continue", a.speaker, a.text))
        last = settings.turns if goes_on.random() < settings.continued else 1
        out: list[dict[str, Any]] = []
        line = a.text
        for t in range(last):
            report = session.prepare(line, a.speaker, exclude=held)
            error = ""
            try:
                for _ in session.say(line, a.speaker, report=report):
                    pass
            except NoReplyError as exc:  # the session gave up on its tries: filtered as empty
                error = str(exc)  # (a backend that fails stops the run: nothing is cached)
            reply = "" if error else report.reply
            earlier = [turn["reply"] for turn in out]
            verdicts = filter_reply(checker, character, line, reply, earlier)
            out.append(
                {
                    "line": line,
                    "messages": [
                        {"role": m["role"], "content": shared(m["content"])}
                        for m in report.assembly.messages
                    ],
                    "retrieved": list(report.assembly.scene_ids),
                    "reply": reply,
                    "error": error,
                    "verdicts": verdicts,
                }
            )
            if t + 1 == last or verdicts:
                break
            dialogue = [(turn.speaker, turn.text) for turn in session.history]
            params = replace(QUESTION_PARAMS, seed=item_seed(seed, "next", t))
            asked = followup_messages(character, a.speaker, dialogue)
            line = next_line("".join(llm.stream(asked, params)), character, a.speaker)
            if not line or keeper.copies_canon(line):
                break
        return {"turns": out}

    values = run_items(
        lines,
        answer,
        key=lambda a: {"phase": "reply", "speaker": a.speaker, "text": a.text},
        cache=cache,
        workers=workers,
        progress=progress("answering") if progress else None,
    )
    info = backend_info(llm)
    for a, value in zip(lines, values, strict=True):
        first = sample_id("generated", character.id, a.speaker, a.text)
        turns = value["turns"]
        for t, turn in enumerate(turns):
            verdicts = turn["verdicts"]
            if verdicts:
                dropped.update(verdicts[:1])  # counted once, under its first reason
                break  # a later turn would have this reply in its history
            samples.append(
                Sample(
                    first if t == 0 else sample_id("generated", character.id, first, t),
                    "generated",
                    tuple(turn["messages"]),
                    turn["reply"],
                    {
                        "scenes": [],
                        "retrieved": turn["retrieved"],
                        "asked_by": a.speaker,
                        "turn": t + 1,
                        **({"conversation": first} if t else {}),
                        **info,
                        "seed": item_seed(settings.seed, "reply", a.speaker, a.text),
                    },
                )
            )
    manifest = Manifest(
        character={
            "id": character.id,
            "name": character.name,
            "language": character.language,
            "digest": character_digest(character),
        },
        held_out=sorted(held, key=[s.id for s in character.scenes].index),
        split={"share": settings.held_out, "seed": settings.seed},
        settings={**asdict(settings), **info, "requests": made, "lines_kept": len(lines)},
        dropped=dict(dropped),
    )
    return manifest, samples


class _QueryPrimer:
    """Before a line is answered, its retrieval query (the line) and the next ``AHEAD``
    lines' are put in the embedder's memory at once: the keeper's vectors where they are
    the queries' own, else one batch. Rows read from the cache never ask for it."""

    AHEAD = 512

    def __init__(self, embedder: Embedder, lines: list[Asked], vectors: Any) -> None:
        self.embedder, self.lines = embedder, lines
        self.vectors = vectors if embedder.queries_are_documents else None
        self.at = {(a.speaker, a.text): i for i, a in enumerate(lines)}
        self.lock = threading.Lock()

    def __call__(self, line: Asked) -> None:
        if self.embedder.knows_query(line.text):
            return
        with self.lock:
            if self.embedder.knows_query(line.text):
                return
            i = self.at[(line.speaker, line.text)]
            texts = [a.text for a in self.lines[i : i + self.AHEAD]]
            vectors = None if self.vectors is None else self.vectors[i : i + self.AHEAD]
            self.embedder.remember_queries(texts, vectors)
