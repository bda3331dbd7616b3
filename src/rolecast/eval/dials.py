"""Does a dial move what it says it moves? ``rolecast eval dials NAME --trait O``.

The character is interviewed twice (``eval personality``): with the factor dialled low and
dialled high, on the same items with the same seeds. For every factor, each item answered
and rated in both conditions gives a paired difference (high minus low, keyed); the
factor's shift is their mean with a bootstrap interval. The dialled factor should move up;
the other four should not move (their intervals should hold 0).

Essays are the second measure: the character writes ``n`` gaokao-style essays under each
dial (``rolecast essay``, the same seeds), and a blind judge, shown one essay and the two
poles of the factor in a random order (A and B), says which pole the writer shows. The
accuracy of its sorting has a Wilson interval; 50 % is chance.

    shifts(low, high)                     -> {factor: Shift}
    sort_prompt(essay, factor, language, high_first)
    parse_choice(text)                    -> "A" | "B" | None
    wilson(k, n)                          -> (low, high)
    run_dials_eval(prototype, judge, factor, ...) -> DialsResult
    dials_report(result, head)            -> Markdown and the figure
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends.base import LLM, GenerationParams
from ..character.personality import (
    FACTORS,
    NAMES_EN,
    NAMES_ZH,
    POLES,
    format_dials,
    with_dials,
)
from ..errors import InputError
from ..study.scoring import wilson
from .interview import (
    ITEMS,
    JUDGE_PARAMS,
    InterviewResult,
    Item,
    complete,
    question_language,
    run_personality_eval,
)
from .metrics import Interval, mean_interval
from .report import Cache, markdown_table, md_escape, to_jsonable
from .runner import Progress, item_seed, run_items

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..essay import Essay
    from ..session import Session

LOW, HIGH = 1, 5  # the dial's two settings
DEFAULT_TOPIC = {"zh": "熟悉的地方也有风景", "en": "Scenery in familiar places"}
_CHOICE = re.compile(r"(?<![A-Za-z])([AB])(?![A-Za-z])")


@dataclass(frozen=True)
class Shift:
    """How far a factor moved from the low dial to the high one: the mean paired difference
    of its items' keyed scores, with a bootstrap interval, and its score in each."""

    factor: str
    low: float | None
    high: float | None
    difference: Interval

    @property
    def moved(self) -> str:
        """ "up" or "down" when the interval leaves out 0, else "no"."""
        d = self.difference
        if d.n == 0 or math.isnan(d.low):
            return "no"
        return "up" if d.low > 0 else "down" if d.high < 0 else "no"

    def to_dict(self) -> dict[str, Any]:
        d = self.difference
        return {
            "factor": self.factor,
            "low": self.low,
            "high": self.high,
            "shift": d.mean,
            "interval": [d.low, d.high],
            "items": d.n,
            "moved": self.moved,
        }


def shifts(low: InterviewResult, high: InterviewResult, seed: int = 0) -> dict[str, Shift]:
    """Each factor's shift from ``low`` to ``high``, over the items rated in both."""
    lows = {j.answer.item.number: j for j in low.judged}
    out = {}
    for factor in FACTORS:
        diffs = []
        for j in high.judged:
            item: Item = j.answer.item
            other = lows.get(item.number)
            if item.factor != factor or other is None:
                continue
            if j.keyed is not None and other.keyed is not None:
                diffs.append(float(j.keyed - other.keyed))
        lo, hi = low.scores.get(factor), high.scores.get(factor)
        out[factor] = Shift(
            factor,
            lo.score if lo else None,
            hi.score if hi else None,
            mean_interval(diffs, seed=seed),
        )
    return out


# ---------------------------------------------------------------- sorting essays, blind


def sort_prompt(text: str, factor: str, language: str, high_first: bool) -> list[dict[str, str]]:
    """Ask which of two descriptions (the factor's poles, as A and B in the given order)
    fits the writer of ``text``. Nothing says which dial wrote it."""
    high, low = POLES[(factor, "high")], POLES[(factor, "low")]
    zh = question_language(language) == "zh"
    first, second = (high, low) if high_first else (low, high)
    if zh:
        a = f"{first.adjectives_zh}；{first.behaviour_zh}"
        b = f"{second.adjectives_zh}；{second.behaviour_zh}"
        system = "你是心理学研究者，根据文章判断作者的性格。只回答一个字母。"
        user = (
            f"下面是一篇作文。它的作者更像哪一种人？\n\nA：{a}\nB：{b}\n\n"
            f"作文：\n{text}\n\n只回答 A 或 B。"
        )
    else:
        a = f"{first.adjectives_en}; {first.behaviour_en}"
        b = f"{second.adjectives_en}; {second.behaviour_en}"
        system = (
            "You are a personality researcher judging a writer from their essay. "
            "Answer with one letter."
        )
        user = (
            f"Here is an essay. Which kind of person is its writer more like?\n\n"
            f"A: {a}\nB: {b}\n\nEssay:\n{text}\n\nAnswer only A or B."
        )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_choice(text: str) -> str | None:
    """The A or B a judge answered (the first one it names), or None."""
    m = _CHOICE.search(text.strip().upper().replace("Ａ", "A").replace("Ｂ", "B"))
    return m.group(1) if m else None


@dataclass(frozen=True)
class Sorted:
    """A judge's blind call on one essay: the dial that wrote it and the pole it named."""

    dial: str  # "high" or "low"
    index: int
    high_first: bool
    reply: str
    choice: str | None  # "A", "B" or None (unreadable)

    @property
    def said(self) -> str | None:
        if self.choice is None:
            return None
        return "high" if (self.choice == "A") == self.high_first else "low"

    @property
    def correct(self) -> bool:
        return self.said == self.dial

    def to_dict(self) -> dict[str, Any]:
        return {
            "dial": self.dial,
            "index": self.index,
            "high_first": self.high_first,
            "reply": self.reply,
            "choice": self.choice,
            "said": self.said,
            "correct": self.correct,
        }


def sort_essays(
    essays: Mapping[str, Sequence[Essay]],
    factor: str,
    language: str,
    judge: LLM,
    *,
    seed: int = 0,
    params: GenerationParams = JUDGE_PARAMS,
    cache: Cache | None = None,
    workers: int = 1,
    progress: Progress | None = None,
) -> list[Sorted]:
    """The judge's blind call on each essay (``essays``: by dial, "low" and "high"); the
    order of the two poles is drawn per essay from ``seed``."""
    work = [(dial, i, e) for dial in ("low", "high") for i, e in enumerate(essays.get(dial, ()))]

    def call(entry: tuple[str, int, Essay]) -> dict[str, Any]:
        dial, i, essay = entry
        high_first = random.Random(item_seed(seed, "sort", dial, i)).random() < 0.5
        text = f"{essay.title}\n\n{essay.body}".strip()
        reply = complete(judge, sort_prompt(text, factor, language, high_first), params)
        return Sorted(dial, i, high_first, reply, parse_choice(reply)).to_dict()

    done = run_items(
        work,
        call,
        key=lambda e: {"sort": e[0], "index": e[1], "factor": factor, "essay": e[2].to_dict()},
        cache=cache,
        workers=workers,
        progress=progress,
    )
    return [
        Sorted(d["dial"], int(d["index"]), bool(d["high_first"]), d["reply"], d["choice"])
        for d in done
    ]


# ---------------------------------------------------------------- the whole evaluation


@dataclass
class DialsResult:
    character: str
    factor: str
    language: str
    interviews: dict[str, InterviewResult]  # "low", "high"
    shifts: dict[str, Shift]
    essays: dict[str, list[Essay]] = field(default_factory=dict)
    sorted: list[Sorted] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> tuple[int, int, tuple[float, float]]:
        """Essays sorted right, essays sorted (an unreadable call counts as wrong), interval."""
        k, n = sum(s.correct for s in self.sorted), len(self.sorted)
        return k, n, wilson(k, n)

    def to_dict(self) -> dict[str, Any]:
        k, n, (lo, hi) = self.accuracy
        return {
            "factor": self.factor,
            "levels": {"low": LOW, "high": HIGH},
            "language": self.language,
            "shifts": {f: s.to_dict() for f, s in self.shifts.items()},
            "essays": {
                "topic": self.meta.get("topic"),
                "per_dial": {d: len(v) for d, v in self.essays.items()},
                "correct": k,
                "sorted": n,
                "unreadable": sum(s.choice is None for s in self.sorted),
                "answered_a": sum(s.choice == "A" for s in self.sorted),
                "accuracy": k / n if n else None,
                "interval": [lo, hi] if n else None,
                "calls": [s.to_dict() for s in self.sorted],
                "lengths": {d: [e.length for e in v] for d, v in self.essays.items()},
            },
            "interviews": {d: r.to_dict() for d, r in self.interviews.items()},
            "meta": to_jsonable(self.meta),
        }


def run_dials_eval(
    prototype: Session,
    judge: LLM | None,
    factor: str,
    *,
    items: Sequence[Item] = ITEMS,
    language: str | None = None,
    seed: int = 0,
    essays: int = 0,
    topic: str | None = None,
    essay_dir: Path | None = None,
    essay_tokens: int | None = None,
    cache: Cache | None = None,
    judge_cache: Cache | None = None,
    workers: int = 1,
    judge_workers: int | None = None,
    fresh: bool = False,
    progress: Progress | None = None,
) -> DialsResult:
    """Interview the character with ``factor`` dialled low, then high; with ``essays`` > 0,
    have it write that many essays under each dial (saved under ``essay_dir``) and the
    judge sort them blind. ``cache``/``judge_cache`` hold both conditions (their scopes
    differ by the character's dials)."""
    from dataclasses import replace

    from ..essay import ESSAY_PARAMS, Settings, write_essays

    if factor not in FACTORS:
        raise InputError(f"unknown factor {factor!r}")
    if essays < 0:
        raise InputError(f"--essays must not be negative, not {essays}")
    character = prototype.character
    judge = prototype.llm if judge is None else judge
    lang = question_language(language or character.language)
    topic = topic or DEFAULT_TOPIC[lang]
    essay_params = ESSAY_PARAMS
    if essay_tokens is not None:
        if essay_tokens < 1:
            raise InputError(f"--essay-tokens must be at least 1, not {essay_tokens}")
        essay_params = replace(ESSAY_PARAMS, max_tokens=essay_tokens)
    interviews: dict[str, InterviewResult] = {}
    written: dict[str, list[Essay]] = {}
    for name, level in (("low", LOW), ("high", HIGH)):
        dialled = prototype.recast(with_dials(character, {factor: level}))
        interviews[name] = run_personality_eval(
            dialled,
            judge,
            items=items,
            language=lang,
            seed=seed,
            cache=_dialled(cache, dialled.character.personality),
            judge_cache=judge_cache,
            workers=workers,
            judge_workers=judge_workers,
            progress=progress,
        )
        if essays:
            folder = None if essay_dir is None else essay_dir / f"essays-{factor}{level}"
            made = write_essays(
                prototype.llm,
                Settings(topic, lang, {factor: level}, essays, seed, essay_params),
                folder,
                character,
                fresh=fresh,
                workers=workers,
                progress=progress,
            )
            written[name] = made.essays
    calls = (
        sort_essays(
            written,
            factor,
            lang,
            judge,
            seed=seed,
            cache=judge_cache,
            workers=workers if judge_workers is None else judge_workers,
            progress=progress,
        )
        if essays
        else []
    )
    meta = {"seed": seed, "topic": topic if essays else None, "items": len(items)}
    return DialsResult(
        character.name,
        factor,
        lang,
        interviews,
        shifts(interviews["low"], interviews["high"], seed),
        written,
        calls,
        meta,
    )


def _dialled(cache: Cache | None, dials: Mapping[str, int]) -> Cache | None:
    """``cache`` for the answers under ``dials``: its scope names them, so an answer given
    under one dial is never read back as the other's."""
    return None if cache is None else cache.scoped(dials=dict(dials))


# ---------------------------------------------------------------- the report


def _num(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.2f}"


def dials_markdown(result: DialsResult, level: int = 2) -> str:
    h = "#" * level
    f = result.factor
    lines = [
        f"{h} Interview: each factor with {f} dialled low ({f}={LOW}) and high ({f}={HIGH})",
        "",
        "Same items, same seeds; shift = mean over items of (high - low) keyed score, with a "
        "95 % bootstrap interval. The dialled factor should move up; the others should not "
        "move.",
        "",
    ]
    rows = []
    for factor, s in result.shifts.items():
        d = s.difference
        mark = " (dialled)" if factor == f else ""
        rows.append(
            [
                f"{NAMES_EN[factor].capitalize()} ({factor}){mark}",
                _num(s.low),
                _num(s.high),
                f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]" if d.n else "–",
                d.n,
                s.moved,
            ]
        )
    lines.append(
        markdown_table(
            ["factor", f"{f}={LOW}", f"{f}={HIGH}", "shift [95 % CI]", "items", "moved"], rows
        )
    )
    if result.sorted:
        k, n, (lo, hi) = result.accuracy
        topic = result.meta.get("topic")
        lines += [
            "",
            f"{h} Essays sorted blind",
            "",
            f"{len(result.essays.get('low', []))} essays under each dial on 「{topic}」; the "
            "judge saw one essay and the two poles (as A and B, in a random order) and named "
            "the writer's pole.",
            "",
            f"Accuracy **{k}/{n} = {k / n:.0%}** (95 % Wilson interval {lo:.0%} to {hi:.0%}; "
            f"chance is 50 %); unreadable calls (counted wrong): "
            f"{sum(s.choice is None for s in result.sorted)}. The judge answered A in "
            f"{sum(s.choice == 'A' for s in result.sorted)} of {n} calls: a judge that always "
            "names one letter sorts at chance, whatever the essays say.",
            "",
        ]
        rows2 = [
            [dial, len(v), _num(sum(e.length for e in v) / len(v) if v else None)]
            for dial, v in result.essays.items()
        ]
        lines.append(markdown_table(["dial", "essays", "mean length"], rows2))
        for dial in ("low", "high"):
            essay = next(iter(result.essays.get(dial, [])), None)
            if essay is not None:
                opening = md_escape(essay.body[:160])
                lines += [
                    "",
                    f"- {f}={'1' if dial == 'low' else '5'}: 《{essay.title}》 {opening}…",
                ]
    lines += ["", f"{h} Answers to the dialled factor's first items", ""]
    for dial in ("low", "high"):
        shown = [j for j in result.interviews[dial].judged if j.answer.item.factor == f][:2]
        for j in shown:
            lines.append(
                f"- {f}={LOW if dial == 'low' else HIGH}, item {j.answer.item.key} "
                f"(rated {j.score}): {md_escape(j.answer.question)} → "
                f"{md_escape(j.answer.reply[:160])}"
            )
    return "\n".join(lines) + "\n"


def dials_figure(result: DialsResult) -> Figure:
    from .report import new_figure, plot_context

    with plot_context():
        fig = new_figure(6.4, 3.6)
        ax = fig.add_subplot()
        xs = list(range(len(FACTORS)))
        found = [result.shifts[f].difference for f in FACTORS]
        means = [0.0 if d.n == 0 else d.mean for d in found]
        below = [0.0 if d.n == 0 else d.mean - d.low for d in found]
        above = [0.0 if d.n == 0 else d.high - d.mean for d in found]
        colours = ["#c44e52" if f == result.factor else "#4c72b0" for f in FACTORS]
        ax.bar(xs, means, 0.6, color=colours, yerr=[below, above], capsize=4)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(xs, [f"{f}\n{NAMES_ZH[f]}" for f in FACTORS])
        ax.set_ylabel(f"shift: {result.factor}={HIGH} minus {result.factor}={LOW}")
        ax.set_title(f"{result.character}: what the {NAMES_EN[result.factor]} dial moves")
    return fig


def dials_report(result: DialsResult, head: Mapping[str, Any]) -> tuple[str, dict[str, Figure]]:
    from .report import judge_notes

    title = f"# Big Five dials: {result.character}, {NAMES_EN[result.factor]}"
    notes = judge_notes(head, "The character", "answers and essays")
    body = dials_markdown(result)
    dials = format_dials({result.factor: LOW}) + " against " + format_dials({result.factor: HIGH})
    text = "\n\n".join([title, " ".join(notes), f"Dials: {dials}.", body, "![shifts](shifts.png)"])
    return text + "\n", {"shifts": dials_figure(result)}
