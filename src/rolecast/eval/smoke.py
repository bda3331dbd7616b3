"""The conversation gate: ordinary chats with the character, and every way a reply fails.

A battery of ordinary user lines (small talk, in-world questions, emotional lines, an
identity question, a meta question) is said to the character in multi-turn chats, set up
exactly as ``rolecast chat`` sets them up. Each reply is checked for the failures a fan
notices at once:

    empty           nothing is left of the reply after clean-up
    leak            the reply recites the prompt: a run of words from the persona, the
                    standing rules or the canon instructions (phrases that the canon or the
                    user's own line also has do not count)
    repeat          the reply is, or nearly is, an earlier reply of the same chat
    refusal         an assistant's refusal or self-description ("I'm sorry, but I can't",
                    "作为一个AI", "我无法协助")
    assistant_talk  the rest of an assistant's talk: service closers ("feel free to ask"),
                    its framing ("根据你的叙述") and talk about the prompt's own material
                    ("The way Sheldon talks in these scenes", "经典片段")
    canon_copy      the reply copies a canon line: contains a long run of one, or is a whole
                    canon line of some length
    other_speaker   the reply speaks for someone else: another speaker's name prefix, or
                    the character claiming to be the user or a frequent canon speaker
                    ("I'm Leonard" from Sheldon; see ``rolecast.identity``)
    wrong_language  the reply is not in the character's language
    over_long       far longer than a chat reply

The checks are pure functions of the texts (``SmokeChecker``), so they are tested on
scripted replies; ``run_smoke_eval`` drives the chats through any backend.
"""

from __future__ import annotations

import re
import statistics
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from ..assistant_talk import first_assistant_talk, refusal
from ..character.model import Character, cjk_language
from ..errors import InputError, RolecastError
from ..identity import WrongSelf
from ..overlap import cjk_count, grams, join, plain, shared_run, similarity, tokens
from ..prompt.assemble import fixed_texts as prompt_texts
from ..session import PROMPT_RECITE_CJK, PROMPT_RECITE_WORDS, RECITE_CJK, RECITE_WORDS
from .report import Cache, to_jsonable
from .runner import Progress, fresh_session, item_seed, run_items

if TYPE_CHECKING:  # pragma: no cover
    from ..session import Session

FAILURES: tuple[str, ...] = (
    "empty",
    "leak",
    "repeat",
    "refusal",
    "assistant_talk",
    "canon_copy",
    "other_speaker",
    "wrong_language",
    "over_long",
)
# The gate's targets with the default model: the largest share of replies each failure may
# have (failures not named here are reported but have no target).
TARGETS: dict[str, float] = {
    "empty": 0.0,
    "leak": 0.0,
    "refusal": 0.02,
    "repeat": 0.05,
    "canon_copy": 0.05,
}

# Runs of tokens (CJK characters, or words elsewhere) shared with the prompt's fixed text
# that make a leak. 8 CJK characters is a clause ("不要写名字前缀" is 7); a catchphrase the
# canon also has is never counted. The session cuts a reply at the same lengths.
LEAK_CJK, LEAK_WORDS = PROMPT_RECITE_CJK, PROMPT_RECITE_WORDS
# Copying the canon: a run this long of one canon line (as the session cuts it), or a whole
# canon line of at least COPY_WHOLE_* tokens ("一碗面的事儿" alone is a catchphrase, not a copy).
COPY_CJK, COPY_WORDS = RECITE_CJK, RECITE_WORDS
COPY_WHOLE_CJK, COPY_WHOLE_WORDS = 7, 5
NEAR_REPEAT = 0.8  # similarity (difflib ratio of normalised texts) of a near repeat
REPEAT_MIN_CHARS = 4  # a near repeat needs this many characters (an exact one always counts)
SENTENCE_REPEAT_CHARS = 8  # a sentence of an earlier reply said again, this long or longer
_SENTENCE_END = re.compile(r"(?<=[。！？!?])|(?<=\.)\s+|\n")  # "3.5" is not an end
# Over-long: a chat reply of more than this many CJK characters, or words elsewhere
LONG_CJK, LONG_WORDS = 180, 140
LANGUAGE_MIN_LETTERS = 4  # too short to tell its language below this
CJK_SHARE_ZH = 0.5  # a Chinese/Japanese reply: at least this share of its letters are CJK
CJK_SHARE_OTHER = 0.2  # any other language: at most this share

_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class SmokeLine:
    category: str
    text: str


def parse_battery(text: str, where: str | Path = "<battery>") -> list[list[SmokeLine]]:
    """Chats of user lines: one line a turn (``category<TAB>line`` or just the line), a
    blank line between chats, ``#`` comments."""
    chats: list[list[SmokeLine]] = [[]]
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#"):
            continue
        if not line:
            if chats[-1]:
                chats.append([])
            continue
        category, sep, said = raw.partition("\t")
        if not sep:
            category, said = "line", raw
        said = said.strip()
        if not said:
            raise InputError(f"{where}, line {n}: a category without a line to say")
        chats[-1].append(SmokeLine(category.strip() or "line", said))
    chats = [c for c in chats if c]
    if not chats:
        raise InputError(f"{where}: no lines to say (one line a turn, blank lines between chats)")
    return chats


def builtin_battery(language: str) -> list[list[SmokeLine]]:
    """The built-in battery for a character's language (Chinese for zh/ja, else English)."""
    lang = "zh" if cjk_language(language) else "en"
    path = resources.files("rolecast.eval").joinpath("batteries", f"smoke_{lang}.txt")
    return parse_battery(path.read_text("utf-8"), f"smoke_{lang}.txt")


def read_battery(path: str | Path) -> list[list[SmokeLine]]:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the lines file {p}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p} is not UTF-8 text (byte {exc.start})") from None
    return parse_battery(text, p)


def fill_name(chats: Sequence[Sequence[SmokeLine]], character: Character) -> list[list[SmokeLine]]:
    """``${name}`` and ``${user}`` in the lines filled in for this character."""
    values = {"name": character.name, "user": character.user_role}
    return [
        [SmokeLine(ln.category, Template(ln.text).safe_substitute(values)) for ln in chat]
        for chat in chats
    ]


def _sentences(text: str) -> list[str]:
    """The sentences of a reply long enough to count when said again (their end kept)."""
    found = (s.strip() for s in _SENTENCE_END.split(text))
    return [
        s
        for s in found
        if cjk_count(s) >= SENTENCE_REPEAT_CHARS or len(tokens(s)) >= SENTENCE_REPEAT_CHARS
    ]


class SmokeChecker:
    """What is wrong with a reply, as ``{failure: evidence}``; empty when nothing is."""

    def __init__(self, character: Character, fixed_texts: Iterable[str] = ()) -> None:
        self.character = character
        cjk = cjk_language(character.language)
        self.leak_n = LEAK_CJK if cjk else LEAK_WORDS
        self.copy_n = COPY_CJK if cjk else COPY_WORDS
        self.whole_min = COPY_WHOLE_CJK if cjk else COPY_WHOLE_WORDS
        self.long_limit = LONG_CJK if cjk else LONG_WORDS
        canon_lines = [ln.text for s in character.scenes for ln in s.lines if ln.text.strip()]
        canon_toks = [tokens(t) for t in canon_lines]
        # the prompt's fixed text: persona, standing rules, the canon block's instructions
        fixed = [*prompt_texts(character), *fixed_texts]
        self.fixed_grams: set[tuple[str, ...]] = set()
        for t in fixed:
            self.fixed_grams |= grams(tokens(t), self.leak_n)
        self.canon_leak_grams: set[tuple[str, ...]] = set()  # what the canon says may be said
        self.copy_grams: set[tuple[str, ...]] = set()
        self.whole_lines: set[str] = set()
        for toks in canon_toks:
            self.canon_leak_grams |= grams(toks, self.leak_n)
            self.copy_grams |= grams(toks, self.copy_n)
            if len(toks) >= self.whole_min:
                self.whole_lines.add("".join(toks))
        selves = {character.name, *character.aliases}
        others = {ln.speaker.strip() for s in character.scenes for ln in s.lines}
        others |= {character.user_role, *character.narrators}
        self.others = sorted((o for o in others if o and o not in selves), key=len, reverse=True)
        self.wrong_self = WrongSelf.for_character(character)
        # a canon run the persona quotes is the character's own phrase, not a copy
        quoted = set().union(*(grams(tokens(t), self.copy_n) for t in fixed))
        self.catchphrases = self.copy_grams & quoted

    def check(self, reply: str, user_line: str = "", earlier: Sequence[str] = ()) -> dict[str, str]:
        found: dict[str, str] = {}
        toks = tokens(reply)
        if not toks:
            return {"empty": "nothing left after clean-up"}
        said = tokens(user_line)
        leak = shared_run(
            toks, self.fixed_grams, self.leak_n, self.canon_leak_grams | grams(said, self.leak_n)
        )
        if leak:
            found["leak"] = leak.text
        repeat = self._repeat(reply, earlier) or self._parrot(reply, user_line)
        if repeat:
            found["repeat"] = repeat
        refusal = self._refusal(reply)
        if refusal:
            found["refusal"] = refusal
        elif talk := first_assistant_talk(reply):
            found["assistant_talk"] = talk[1]
        copy = self._copy(toks, said)
        if copy:
            found["canon_copy"] = copy
        other = self._other_speaker(reply)
        if other:
            found["other_speaker"] = other
        language = self._language(reply)
        if language:
            found["wrong_language"] = language
        if len(toks) > self.long_limit:
            unit = "characters" if cjk_language(self.character.language) else "words"
            found["over_long"] = f"{len(toks)} {unit} (limit {self.long_limit})"
        return found

    def _repeat(self, reply: str, earlier: Sequence[str]) -> str | None:
        mine = plain(reply)
        for i, before in enumerate(earlier, 1):
            theirs = plain(before)
            if mine == theirs:
                return f"same as reply {i}"
            if min(len(mine), len(theirs)) >= REPEAT_MIN_CHARS:
                ratio = similarity(mine, theirs)
                if ratio >= NEAR_REPEAT:
                    return f"{ratio:.0%} like reply {i}"
        said = {s: i for i, before in enumerate(earlier, 1) for s in _sentences(before)}
        for sentence in _sentences(reply):
            if sentence in said:
                return f"a sentence of reply {said[sentence]} again: {sentence}"
        return None

    def _parrot(self, reply: str, user_line: str) -> str | None:
        if not user_line.strip():
            return None
        found = self._repeat(reply, [user_line])
        return found and found.replace("reply 1", "the user's line")

    def _refusal(self, reply: str) -> str | None:
        return refusal(reply)

    def _copy(self, toks: Sequence[str], said: Sequence[str]) -> str | None:
        whole = "".join(toks)
        if whole in self.whole_lines:
            return f"a whole canon line: {join(toks)}"
        allowed = grams(said, self.copy_n) | self.catchphrases
        run = shared_run(toks, self.copy_grams, self.copy_n, allowed)
        return run.text if run else None

    def _other_speaker(self, reply: str) -> str | None:
        text = unicodedata.normalize("NFKC", reply)
        for name in self.others:
            n = re.escape(name)
            m = re.search(rf"(?:^|[\n」。！？!?])\s*(?P<who>{n}\s*(?:[:：]|「))", text)
            if m:
                return m["who"]
        claim = self.wrong_self.find(text)
        return claim[1] if claim else None

    def _language(self, reply: str) -> str | None:
        text = unicodedata.normalize("NFKC", reply)
        cjk = cjk_count(text)
        letters = len(_LETTER.findall(text))  # CJK characters are letters too
        if letters < LANGUAGE_MIN_LETTERS:
            return None
        share = cjk / letters
        if cjk_language(self.character.language):
            if share < CJK_SHARE_ZH:
                return f"{share:.0%} CJK in a {self.character.language} reply"
        elif share > CJK_SHARE_OTHER:
            return f"{share:.0%} CJK in a {self.character.language} reply"
        return None


def run_chat(prototype: Session, chat: Sequence[SmokeLine], seed: int) -> dict[str, Any]:
    """Say each line of ``chat`` in turn to a fresh session like ``prototype``."""
    session = fresh_session(prototype, seed)
    turns = []
    for line in chat:
        started = time.perf_counter()
        first: float | None = None
        error = ""
        report = session.prepare(line.text)
        try:
            for _ in session.say(line.text, report=report):
                if first is None:
                    first = time.perf_counter() - started
        except RolecastError as exc:  # a reply the session gave up on is an empty reply
            error = str(exc)
        took = time.perf_counter() - started
        if session.memory is not None and not error:
            session.remember()  # between turns, as a chat does while the user types
        turns.append(
            {
                "category": line.category,
                "line": line.text,
                "reply": "" if error else report.reply,
                "raw": getattr(report, "raw", ""),
                "error": error,
                "seconds": round(took, 3),
                "first_token_s": round(first, 3) if first is not None else None,
                "prompt_tokens": report.assembly.parts.get("total", 0),
            }
        )
    return {"turns": turns}


@dataclass
class SmokeResult:
    chats: list[list[SmokeLine]]
    replies: list[list[dict[str, Any]]]  # per chat, per turn: the turn dict plus "failures"
    counts: dict[str, int]
    total: int

    @property
    def rates(self) -> dict[str, float]:
        return {k: (v / self.total if self.total else 0.0) for k, v in self.counts.items()}

    @property
    def clean(self) -> int:
        return sum(1 for chat in self.replies for t in chat if not t["failures"])

    def verdicts(self, targets: Mapping[str, float] = TARGETS) -> dict[str, bool]:
        """Per target: whether the share of replies with that failure is within it."""
        return {k: self.rates.get(k, 0.0) <= limit + 1e-12 for k, limit in targets.items()}

    def passed(self, targets: Mapping[str, float] = TARGETS) -> bool:
        return all(self.verdicts(targets).values())

    def timing(self) -> dict[str, float | None]:
        secs = [t["seconds"] for chat in self.replies for t in chat]
        firsts = [
            t["first_token_s"]
            for chat in self.replies
            for t in chat
            if t.get("first_token_s") is not None
        ]
        return {
            "median_turn_s": round(statistics.median(secs), 3) if secs else None,
            "median_first_token_s": round(statistics.median(firsts), 3) if firsts else None,
        }

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = to_jsonable(
            {
                "replies": self.total,
                "clean": self.clean,
                "counts": self.counts,
                "rates": {k: round(v, 4) for k, v in self.rates.items()},
                "targets": TARGETS,
                "verdicts": self.verdicts(),
                "passed": self.passed(),
                "timing": self.timing(),
                "chats": self.replies,
            }
        )
        return data


def score_chats(
    character: Character,
    chats: Sequence[Sequence[SmokeLine]],
    values: Sequence[Mapping[str, Any]],
    checker: SmokeChecker | None = None,
) -> SmokeResult:
    checker = checker or SmokeChecker(character)
    counts = dict.fromkeys(FAILURES, 0)
    replies: list[list[dict[str, Any]]] = []
    total = 0
    for value in values:
        earlier: list[str] = []
        scored = []
        for turn in value["turns"]:
            failures = checker.check(turn["reply"], turn["line"], earlier)
            if turn.get("error") and "empty" in failures:
                failures["empty"] = turn["error"]
            for k in failures:
                counts[k] += 1
            scored.append({**turn, "failures": failures})
            if turn["reply"]:
                earlier.append(turn["reply"])
            total += 1
        replies.append(scored)
    return SmokeResult([list(c) for c in chats], replies, counts, total)


def run_smoke_eval(
    prototype: Session,
    chats: Sequence[Sequence[SmokeLine]] | None = None,
    *,
    seed: int = 0,
    cache: Cache | None = None,
    progress: Progress | None = None,
) -> SmokeResult:
    """Run the chats (default: the built-in battery of the character's language) on
    sessions like ``prototype`` and check every reply. Chats run one at a time: a chat is
    a sequence, and in-process backends serve one request at a time anyway."""
    character = prototype.character
    chats = fill_name(chats or builtin_battery(character.language), character)
    jobs = list(range(len(chats)))
    values = run_items(
        jobs,
        lambda i: run_chat(prototype, chats[i], item_seed(seed, i, *(ln.text for ln in chats[i]))),
        key=lambda i: {"chat": i, "lines": [ln.text for ln in chats[i]], "seed": seed},
        cache=cache,
        progress=progress,
    )
    return score_chats(character, chats, values)


def smoke_scope(prototype: Session) -> dict[str, Any]:
    """What a cached chat depends on besides its lines: the character, backend, model,
    parameters, embedder, prompt order and token budget of ``prototype``."""
    budget = prototype.budget
    return Cache.scope_for(
        "smoke",
        prototype.character,
        prototype.llm,
        prototype.params,
        embedder=prototype.index.embedder.name if prototype.index else None,
        order=prototype.order,
        budget=[budget.canon, budget.history, budget.total] if budget else None,
        memory=prototype.memory is not None,
    )


def summary_lines(result: SmokeResult) -> list[str]:
    """What `rolecast eval smoke` prints: the counts of each failure, the turn time and the
    gate's verdict."""
    rates = result.rates
    counts = "  ".join(f"{k} {result.counts[k]} ({rates[k]:.0%})" for k in FAILURES)
    failed = [k for k, ok in result.verdicts().items() if not ok]
    verdict = "passed" if result.passed() else "failed: " + ", ".join(failed)
    return [
        f"{result.total} replies, {result.clean} clean; {counts}",
        f"median turn {result.timing()['median_turn_s']} s; gate {verdict}",
    ]


def smoke_markdown(result: SmokeResult, head: Mapping[str, Any], note: str) -> str:
    from .report import markdown_table, md_escape

    ch = head["character"]
    rates = result.rates
    rows = []
    for k in FAILURES:
        target = TARGETS.get(k)
        verdict = "" if target is None else ("ok" if rates[k] <= target + 1e-12 else "**over**")
        rows.append(
            [
                k,
                result.counts[k],
                f"{rates[k]:.1%}",
                "-" if target is None else f"{target:.0%}",
                verdict,
            ]
        )
    timing = result.timing()
    lines = [
        f"# Conversation gate: {ch['name']} ({ch['id']})",
        "",
        note,
        "",
        f"{result.total} replies in {len(result.chats)} chats (order `{head.get('order')}`, "
        f"seed {head.get('seed')}); {result.clean} with no failure. "
        f"Gate: **{'passed' if result.passed() else 'failed'}**.",
        f"Median turn {timing['median_turn_s']} s, first text after "
        f"{timing['median_first_token_s']} s.",
        "",
        markdown_table(["failure", "replies", "share", "target", ""], rows),
        "",
        "## Replies",
        "",
    ]
    for n, chat in enumerate(result.replies, 1):
        lines.append(f"### Chat {n}")
        lines.append("")
        for t in chat:
            flags = "; ".join(f"{k}: {md_escape(str(v))}" for k, v in t["failures"].items())
            lines.append(f"- **{md_escape(t['line'])}**")
            lines.append(f"  - {md_escape(t['reply']) or '(empty)'}")
            if flags:
                lines.append(f"  - ⚠ {flags}")
        lines.append("")
    return "\n".join(lines)
