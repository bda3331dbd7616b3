"""A personality interview: the 44 items of the Big Five Inventory, asked as open questions.

In the manner of InCharacter (Wang et al., 2024), the character is not handed a
questionnaire to tick; each item becomes an open question asked in character, in a
fresh conversation, and a judge backend rates on 1-5 how strongly the answer shows the
trait the item describes. Reverse-keyed items are turned around (6 - s) and each factor
is the mean of its items.

    run_personality_eval(prototype, judge_llm)  -> InterviewResult
        ask_item(item, ask, language)           -> Answer      the character's side
        judge_answer(name, answer, judge_llm)   -> Judged      the judge's side
        big_five(judged)                        -> {factor: FactorScore}
        compare(scores, labels)                 -> errors and high/low accuracy
    personality_report(result, head)            -> Markdown and the bar chart

The items live in ``eval/data/bfi.toml``: their keying (factor and direction of each of
the 44) is John & Srivastava's (1999) published scoring key; the questions and the trait
descriptions given to the judge are rolecast's own wording, not the inventory's.
"""

from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from ..backends.base import LLM, GenerationParams
from ..character.model import Character
from ..character.personality import (
    NAMES_EN,
    Label,
    Scored,
    normalize_factor,
    parse_labels,
    pole,
)
from ..errors import InputError, ParseError
from .report import to_jsonable
from .runner import Ask, Progress, asker, item_seed, read_data, run_items

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..session import Session
    from .report import Cache

log = logging.getLogger(__name__)

FACTORS = ("E", "A", "C", "N", "O")
FACTOR_NAMES = {f: NAMES_EN[f].capitalize() for f in FACTORS}
SCALE_MIN, SCALE_MAX = 1, 5
MIDPOINT = 3.0  # the middle of the 1-5 scale: above it is the "high" side of a factor


@dataclass(frozen=True)
class Item:
    """One BFI item: its number, factor and keying, and rolecast's own wording for it."""

    number: int
    factor: str
    reverse: bool
    trait: str  # what the item describes, in the keyed direction; shown to the judge
    question_en: str
    question_zh: str

    @property
    def key(self) -> str:
        return f"{self.number}{'R' if self.reverse else ''}"

    def question(self, language: str) -> str:
        return self.question_zh if question_language(language) == "zh" else self.question_en

    def keyed(self, score: int) -> int:
        """A judge score turned into the factor's direction."""
        return SCALE_MIN + SCALE_MAX - score if self.reverse else score

    def to_dict(self) -> dict[str, object]:
        return {
            "number": self.number,
            "factor": self.factor,
            "reverse": self.reverse,
            "trait": self.trait,
        }


def _read_items() -> tuple[Item, ...]:
    """The items from the package's ``eval/data/bfi.toml``."""
    data = read_data("bfi.toml")
    return tuple(
        Item(int(i["number"]), i["factor"], bool(i["reverse"]), i["trait"], i["en"], i["zh"])
        for i in data["item"]
    )


ITEMS: tuple[Item, ...] = _read_items()


def item_by_number(number: int) -> Item:
    if not 1 <= number <= len(ITEMS):
        raise InputError(f"BFI items are numbered 1 to {len(ITEMS)}, not {number}")
    return ITEMS[number - 1]


def question_language(language: str) -> str:
    """The language the questions are asked in: "zh" for a Chinese character, else "en"."""
    return "zh" if language.lower().startswith("zh") else "en"


def items_for(factors: Iterable[str] = FACTORS, per_factor: int | None = None) -> list[Item]:
    """Items of some factors, in item order; ``per_factor`` keeps the first n of each."""
    wanted = [normalize_factor(f) for f in factors]
    kept: dict[str, int] = {}
    out = []
    for item in ITEMS:
        if item.factor in wanted and (per_factor is None or kept.get(item.factor, 0) < per_factor):
            kept[item.factor] = kept.get(item.factor, 0) + 1
            out.append(item)
    return out


# ---------------------------------------------------------------- the character's side


@dataclass(frozen=True)
class Answer:
    item: Item
    question: str
    reply: str

    def to_dict(self) -> dict[str, object]:
        return {**self.item.to_dict(), "question": self.question, "reply": self.reply}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Answer:
        """The answer back from ``to_dict()`` (as a cache keeps it)."""
        return cls(item_by_number(int(data["number"])), str(data["question"]), str(data["reply"]))


def ask_item(item: Item, ask: Ask, language: str) -> Answer:
    question = item.question(language)
    return Answer(item, question, ask(question).strip())


# ---------------------------------------------------------------------- the judge's side

JUDGE_PARAMS = GenerationParams(max_tokens=48, temperature=0.0, top_p=1.0, seed=0)

_JUDGE_SYSTEM = (
    "You rate personality from what a fictional character says, judging only what the "
    "answer shows, not how well it is written. Reply with one number from 1 to 5 and "
    "nothing else."
)
_JUDGE_USER = Template(
    "Question: ${question}\n"
    '${name}\'s answer: "${answer}"\n\n'
    "How much does the answer show that ${name} ${trait}? 1 = clearly the opposite, "
    "3 = neither, or the answer does not tell, 5 = very much. "
    'Reply with the number only, or with JSON like {"score": 4}.'
)
_JUDGE_RETRY = 'Give only the rating: one whole number from 1 to 5, or JSON like {"score": 4}.'
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)


def judge_prompt(
    character_name: str, item: Item, question: str, answer: str
) -> list[dict[str, str]]:
    """The chat messages that ask a judge to rate one answer on the item's trait (1-5)."""
    user = _JUDGE_USER.substitute(
        name=character_name, trait=item.trait, question=question, answer=answer
    )
    return [{"role": "system", "content": _JUDGE_SYSTEM}, {"role": "user", "content": user}]


def strip_reasoning(text: str) -> str:
    """A reply without the ``<think>`` block that reasoning models put first."""
    return _THINK.sub("", text).strip()


def complete(llm: LLM, messages: Sequence[Mapping[str, str]], params: GenerationParams) -> str:
    """The whole reply of a backend, reasoning left out."""
    return strip_reasoning("".join(llm.stream([dict(m) for m in messages], params)))


_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
_END = r"(?![0-9]|\.[0-9])"  # a number ends here (a full stop may follow)
_DENOMINATOR = re.compile(
    r"(?:/|\bout\s+of\b|\bof\b)\s*5(?:\.0+)?" + _END + r"|满分\s*5\s*分?", re.I
)
_RANGE = re.compile(r"(?<![0-9.])1\s*(?:-|–|—|~|\bto\b|\band\b|到|至)\s*5" + _END, re.I)
_LABELLED = re.compile(
    r"(?:\b(?:score|rating|rate)\b|评分|分数|得分|打分)\W{0,4}?(?:is|of|=|:|：|是|为)?\s*\W{0,3}?("
    + _NUMBER
    + ")",
    re.I,
)
_STANDALONE = re.compile(r"(?<![0-9.])(" + _NUMBER + ")" + _END)


def _in_scale(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if value != int(value) or not SCALE_MIN <= value <= SCALE_MAX:
        return None
    return int(value)


def parse_score(text: str) -> int | None:
    """The 1-5 rating in a judge's reply, or None when there is none, more than one, or it
    is out of range. Reads "4", "Score: 4/5", "**4**", '{"score": 4}', "评分：4分"."""
    text = unicodedata.normalize("NFKC", strip_reasoning(text))
    for blob in _JSON_OBJECT.findall(text):
        try:
            data = json.loads(blob)
        except ValueError:
            continue
        if isinstance(data, dict):
            for key, value in data.items():
                if str(key).lower() in {"score", "rating"}:
                    return _in_scale(value)
    text = _RANGE.sub(" ", _DENOMINATOR.sub(" ", text))
    labelled = _LABELLED.search(text)
    if labelled:
        return _in_scale(labelled[1])
    found = {float(n) for n in _STANDALONE.findall(text)}
    return _in_scale(found.pop()) if len(found) == 1 else None


@dataclass(frozen=True)
class Judged:
    """A judged answer. ``score`` is the judge's 1-5 for the trait as the item words it;
    ``status`` is "ok", "unparsed" (no rating after a retry) or "empty" (no answer)."""

    answer: Answer
    score: int | None
    judge_replies: tuple[str, ...] = ()
    status: str = "ok"

    @property
    def keyed(self) -> int | None:
        """The score in the factor's direction (reverse-keyed items turned around)."""
        return None if self.score is None else self.answer.item.keyed(self.score)

    def to_dict(self) -> dict[str, object]:
        return {
            **self.answer.to_dict(),
            "score": self.score,
            "keyed": self.keyed,
            "status": self.status,
            "judge_replies": list(self.judge_replies),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Judged:
        """The judged answer back from ``to_dict()`` (as a cache keeps it)."""
        score = data["score"]
        return cls(
            Answer.from_dict(data),
            None if score is None else int(score),
            tuple(str(r) for r in data.get("judge_replies", ())),
            str(data.get("status", "ok")),
        )


def judge_answer(
    character_name: str,
    answer: Answer,
    judge_llm: LLM,
    params: GenerationParams = JUDGE_PARAMS,
) -> Judged:
    """Rate one answer; asks once more, reminding the format, when the rating cannot be read."""
    if not answer.reply.strip():
        return Judged(answer, None, (), "empty")
    messages = judge_prompt(character_name, answer.item, answer.question, answer.reply)
    first = complete(judge_llm, messages, params)
    score = parse_score(first)
    if score is not None:
        return Judged(answer, score, (first,))
    log.info("judge rating not readable for item %d: %r", answer.item.number, first[:80])
    retry = [
        *messages,
        {"role": "assistant", "content": first},
        {"role": "user", "content": _JUDGE_RETRY},
    ]
    second = complete(judge_llm, retry, params)
    score = parse_score(second)
    return Judged(answer, score, (first, second), "ok" if score is not None else "unparsed")


@dataclass(frozen=True)
class FactorScore:
    factor: str
    score: float | None  # mean keyed score on 1-5; None when no item of it was rated
    items: int  # items rated and used
    asked: int  # items of the factor that were judged

    @property
    def name(self) -> str:
        return FACTOR_NAMES[self.factor]

    def to_dict(self) -> dict[str, object]:
        score = None if self.score is None else round(self.score, 4)
        return {"name": self.name, "score": score, "items": self.items, "asked": self.asked}


def big_five(judged: Iterable[Judged]) -> dict[str, FactorScore]:
    """The five factors (all present, in E A C N O order): the mean keyed score of each."""
    keyed: dict[str, list[int]] = {f: [] for f in FACTORS}
    asked = dict.fromkeys(FACTORS, 0)
    for j in judged:
        factor = j.answer.item.factor
        asked[factor] += 1
        if j.keyed is not None:
            keyed[factor].append(j.keyed)
    return {
        f: FactorScore(f, sum(v) / len(v) if v else None, len(v), asked[f])
        for f, v in keyed.items()
    }


# ------------------------------------------------------------------------------ labels


def read_labels(path: str | Path, role: str | None = None) -> dict[str, Label]:
    """Labels from a JSON or TOML file (by suffix; a file with neither suffix may be either):
    a table like ``{"E": 4.2, "A": "low"}``, or an InCharacter label file
    (``{"annotation": {"haruhi-zh": {"BFI": {"Extraversion": {"score": 4.0, "type": "H"},
    ...}}}}``) with ``role`` naming its entry."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParseError(f"cannot read the labels file: {exc}", path) from exc
    from ..config import tomllib

    suffix = path.suffix.lower()
    data: object = None
    errors = []
    if suffix != ".toml":
        try:
            data = json.loads(text)
        except ValueError as exc:
            errors.append(f"not JSON ({exc})")
    if data is None and suffix != ".json":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            errors.append(f"not TOML ({exc})")
    if data is None:
        raise ParseError("; ".join(errors), path)
    try:
        if isinstance(data, Mapping) and "annotation" in data:
            return parse_labels(incharacter_labels(data["annotation"], role))
        if role is not None:
            raise InputError(
                f"--role {role} is for an InCharacter label file (with an 'annotation' "
                "table); this one holds one character's labels"
            )
        return parse_labels(data)
    except InputError as exc:
        raise ParseError(str(exc), path) from exc


def incharacter_labels(annotation: object, role: str | None) -> dict[str, object]:
    """One role's Big Five labels from an InCharacter ``annotation`` table: each BFI
    dimension as its score and type (H, L, or X for neither)."""
    if not isinstance(annotation, Mapping) or not annotation:
        raise InputError("'annotation' must be a table of roles like \"haruhi-zh\"")
    roles = sorted(str(r) for r in annotation)
    shown = ", ".join(roles[:12]) + (f" and {len(roles) - 12} more" if len(roles) > 12 else "")
    if role is None:
        raise InputError(f"an InCharacter label file: pick a role with --role ({shown})")
    if role not in annotation:
        close = [r for r in roles if r.split("-")[0].lower() == role.split("-")[0].lower()]
        hint = f"; did you mean {', '.join(close)}?" if close else f"; roles: {shown}"
        raise InputError(f"no role {role!r} in the label file{hint}")
    entry = annotation[role]
    bfi = entry.get("BFI") if isinstance(entry, Mapping) else None
    if not isinstance(bfi, Mapping) or not bfi:
        raise InputError(f"role {role!r} has no BFI labels")
    return dict(bfi)


def side(value: float | None) -> str | None:
    """ "high" above the scale's midpoint, "low" below it, None on it (or for no value)."""
    return None if value is None else pole(value)


def compare(
    scores: Mapping[str, FactorScore | float | None], labels: Mapping[str, object]
) -> dict[str, Any]:
    """Scores against labels: per factor the absolute error (numeric labels) and whether the
    score is on the label's side of the midpoint (numeric labels off the midpoint, and
    "high"/"low"). A score on the midpoint is on neither side: it counts as a miss. Factors
    without a score are reported and left out of the means."""
    checked = parse_labels(labels)
    factors: dict[str, dict[str, object]] = {}
    errors: list[float] = []
    hits: list[bool] = []
    for factor in FACTORS:
        if factor not in checked:
            continue
        label = checked[factor]
        raw = scores.get(factor)
        score = raw.score if isinstance(raw, FactorScore) else raw
        if isinstance(label, Scored):
            number, label_side = label.score, label.side
        elif isinstance(label, str):
            number, label_side = None, label
        else:
            number, label_side = label, side(label)
        row: dict[str, object] = {
            "name": FACTOR_NAMES[factor],
            "label": str(label) if isinstance(label, Scored) else label,
            "label_side": label_side,
            "score": score,
            "side": side(score),
            "abs_error": None,
            "side_correct": None,
        }
        if score is not None:
            if number is not None:
                row["abs_error"] = abs(score - number)
                errors.append(abs(score - number))
            if label_side is not None:
                row["side_correct"] = side(score) == label_side
                hits.append(side(score) == label_side)
        factors[factor] = row
    return {
        "factors": factors,
        "mean_abs_error": sum(errors) / len(errors) if errors else None,
        "n_error": len(errors),
        "side_accuracy": sum(hits) / len(hits) if hits else None,
        "n_side": len(hits),
    }


# ----------------------------------------------------------------------- whole interview


@dataclass
class InterviewResult:
    character: str
    language: str
    judged: list[Judged]
    scores: dict[str, FactorScore]
    comparison: dict[str, Any] | None = None
    judge_model: str = ""
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def unparsed(self) -> int:
        return sum(j.status == "unparsed" for j in self.judged)

    @property
    def empty(self) -> int:
        return sum(j.status == "empty" for j in self.judged)

    def to_dict(self) -> dict[str, object]:
        return {
            "eval": "personality",
            "character": self.character,
            "language": self.language,
            "judge_model": self.judge_model,
            "scores": {f: s.to_dict() for f, s in self.scores.items()},
            "comparison": self.comparison,
            "items": len(self.judged),
            "unparsed": self.unparsed,
            "empty": self.empty,
            "answers": [j.to_dict() for j in self.judged],
            "meta": self.meta,
        }


def personality_scopes(
    character: Character,
    llm: LLM,
    judge_llm: LLM,
    params: GenerationParams,
    embedder: str,
    language: str,
    seed: int,
    judge_params: GenerationParams = JUDGE_PARAMS,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answers' cache scope (the character, its backend and parameters, embedder,
    language, seed) and the ratings' (the judge's: a rating depends on the answer and the
    judge, not on the backend that answered)."""
    from .report import Cache

    answers = Cache.scope_for(
        "personality",
        character,
        llm,
        params,
        embedder=embedder,
        mode="hybrid",
        language=language,
        seed=seed,
    )
    ratings = Cache.scope_for(
        "personality-judge", character, judge_llm, judge_params, language=language
    )
    return answers, ratings


def _phase(progress: Progress | None, offset: int, total: int) -> Progress | None:
    """``progress`` of one phase, counted as part of both phases together."""
    if progress is None:
        return None
    report = progress

    def shifted(done: int, _n: int) -> None:
        report(offset + done, total)

    return shifted


def run_personality_eval(
    prototype: Session,
    judge_llm: LLM | None = None,
    *,
    items: Sequence[Item] = ITEMS,
    language: str | None = None,
    labels: Mapping[str, object] | None = None,
    seed: int = 0,
    judge_params: GenerationParams = JUDGE_PARAMS,
    cache: Cache | None = None,
    judge_cache: Cache | None = None,
    workers: int = 1,
    judge_workers: int | None = None,
    progress: Progress | None = None,
) -> InterviewResult:
    """Interview the character, judge, score, and compare with ``labels`` when given.

    Each item's question is put to a fresh session like ``prototype`` (the character's
    chat setup), sampled with the item's own seed; ``judge_llm`` (default: the prototype's
    backend, the same object) rates each answer. ``cache`` keeps the answers (its scope
    names the character, backend, parameters, language and seed), ``judge_cache`` the
    ratings (the judge's scope); a changed answer is rated again. ``progress`` counts
    answers and ratings together.
    """
    character = prototype.character
    judge = prototype.llm if judge_llm is None else judge_llm
    lang = question_language(language or character.language)
    total = 2 * len(items)

    def answer(item: Item) -> dict[str, object]:
        ask = asker(prototype, item_seed(seed, f"bfi-{item.number}"))
        return ask_item(item, ask, lang).to_dict()

    answers = [
        Answer.from_dict(v)
        for v in run_items(
            items,
            answer,
            key=lambda item: {"phase": "answer", "item": item.number},
            cache=cache,
            workers=workers,
            progress=_phase(progress, 0, total),
        )
    ]
    judged = [
        Judged.from_dict(v)
        for v in run_items(
            answers,
            lambda a: judge_answer(character.name, a, judge, judge_params).to_dict(),
            # the answer is part of the key: a changed answer is judged again
            key=lambda a: {
                "phase": "judge",
                "item": a.item.number,
                "question": a.question,
                "reply": a.reply,
            },
            cache=judge_cache,
            workers=workers if judge_workers is None else judge_workers,
            progress=_phase(progress, len(items), total),
        )
    ]
    scores = big_five(judged)
    comparison = compare(scores, labels) if labels is not None else None
    meta: dict[str, object] = {
        "seed": seed,
        "params": to_jsonable(prototype.params),
        "judge_params": to_jsonable(judge_params),
    }
    return InterviewResult(character.name, lang, judged, scores, comparison, judge.model, meta)


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(result: InterviewResult, level: int = 2) -> str:
    """A Markdown section: factor scores (and labels), then the rating of every item."""
    h = "#" * level
    rows = [
        f"{h} Personality: {result.character}",
        "",
        f"BFI interview, {len(result.judged)} items in {result.language}, judged by "
        f"{result.judge_model or 'the judge'}; {result.unparsed} ratings unreadable, "
        f"{result.empty} answers empty.",
        "",
    ]
    comparison = (result.comparison or {}).get("factors", {})
    head = "| Factor | Score (1-5) | Items |"
    line = "|---|---|---|"
    if comparison:
        head += " Label | Abs. error | Side |"
        line += "---|---|---|"
    rows += [head, line]
    for f, s in result.scores.items():
        row = f"| {s.name} ({f}) | {_cell(s.score)} | {s.items}/{s.asked} |"
        if comparison:
            c = comparison.get(f, {})
            row += f" {_cell(c.get('label'))} | {_cell(c.get('abs_error'))} |"
            row += f" {_cell(c.get('side_correct'))} |"
        rows.append(row)
    if result.comparison:
        c = result.comparison
        rows += [
            "",
            f"Mean absolute error {_cell(c['mean_abs_error'])} over {c['n_error']} factors; "
            f"high/low side right {_cell(c['side_accuracy'])} over {c['n_side']} factors.",
        ]
    rows += ["", "| Item | Factor | Judge | Keyed | Status |", "|---|---|---|---|---|"]
    for j in result.judged:
        item = j.answer.item
        rows.append(
            f"| {item.key} | {item.factor} | {_cell(j.score)} | {_cell(j.keyed)} | {j.status} |"
        )
    return "\n".join(rows) + "\n"


def summary_lines(result: InterviewResult) -> list[str]:
    """What `rolecast eval personality` prints: each factor, then the label comparison."""
    factors = (result.comparison or {}).get("factors", {})
    lines = []
    for f, s in result.scores.items():
        score = "n/a " if s.score is None else f"{s.score:.2f}"
        line = f"{f} {s.name:18s} {score}  ({s.items}/{s.asked} items)"
        if f in factors:
            label = factors[f]["label"]
            line += f"  label {label:g}" if isinstance(label, float) else f"  label {label}"
        lines.append(line)
    if result.comparison:
        c = result.comparison
        mae, acc = c["mean_abs_error"], c["side_accuracy"]
        lines.append(
            f"mean abs error {'n/a' if mae is None else f'{mae:.2f}'} ({c['n_error']} factors), "
            f"high/low side right {'n/a' if acc is None else f'{acc:.0%}'} "
            f"({c['n_side']} factors)"
        )
    return lines


def personality_figure(
    result: InterviewResult, labels: Mapping[str, Label] | None = None
) -> Figure:
    """Bars of the five factor scores on the 1-5 scale, with the labels where given: a
    marker at a numeric label, the word at a high/low one."""
    from .report import new_figure, plot_context

    labels = labels or {}
    with plot_context():
        fig = new_figure(6.4, 4.0)
        ax = fig.add_subplot()
        scores = [result.scores[f] for f in FACTORS]
        xs = list(range(len(scores)))
        heights = [0.0 if s.score is None else s.score - SCALE_MIN for s in scores]
        ax.bar(xs, heights, 0.6, bottom=SCALE_MIN, color="#4c72b0", label="score")
        for x, s in zip(xs, scores, strict=True):
            text = "n/a" if s.score is None else f"{s.score:.2f}"
            y = SCALE_MIN if s.score is None else s.score
            ax.text(x, y + 0.05, text, ha="center", va="bottom", fontsize="small")
        marked = [(x, labels[s.factor]) for x, s in enumerate(scores) if s.factor in labels]
        numeric = [
            (x, v.score if isinstance(v, Scored) else float(v))
            for x, v in marked
            if not isinstance(v, str)
        ]
        if numeric:
            ax.scatter(
                [x for x, _ in numeric],
                [v for _, v in numeric],
                marker="D",
                color="#dd8452",
                zorder=3,
                label="label",
            )
        for x, v in marked:
            if isinstance(v, str):
                ax.text(x, SCALE_MAX + 0.15, f"label: {v}", ha="center", fontsize="small")
        ax.axhline(MIDPOINT, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xticks(xs, [f"{s.factor}\n{s.name}" for s in scores], fontsize="small")
        ax.set_ylim(SCALE_MIN, SCALE_MAX + 0.5)
        ax.set_ylabel("score (1-5)")
        ax.set_title(f"Big Five interview: {result.character}")
        if numeric:
            ax.legend(fontsize="small", loc="lower right")
    return fig


def personality_report(
    result: InterviewResult,
    head: Mapping[str, Any],
    labels: Mapping[str, Label] | None = None,
) -> tuple[str, dict[str, Figure]]:
    """The report's Markdown and figures. ``head`` is the results' header
    (``report.header``): the character, the backend that answered, the judge's
    (``"judge"``) and the embedder."""
    from .report import judge_notes

    per_factor = result.meta.get("items_per_factor")
    notes = judge_notes(head, "Answers", "answers")
    character = head["character"]
    text = "\n".join(
        [
            f"# Personality interview: {character['name']} ({character['id']})",
            "",
            *(f"{n}\n" for n in notes),
            f"{len(result.judged)} BFI items ({per_factor or 'all'} per factor), each asked in "
            f"a fresh conversation with the character's canon retrieved (embedder "
            f"`{head.get('embedder')}`, seed {result.meta.get('seed')}), then rated 1-5 by the "
            "judge.",
            "",
            "![big_five](big_five.png)",
            "",
            markdown(result),
        ]
    )
    return text, {"big_five": personality_figure(result, labels)}
