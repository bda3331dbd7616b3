"""One conversation: retrieval -> prompt assembly -> backend -> a cleaned, recorded reply."""

from __future__ import annotations

import logging
import random
import re
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from .backends.base import LLM, GenerationParams
from .character.model import Character
from .errors import InputError, NoReplyError
from .overlap import Gram, grams, grams_of, plain, shared_run, similarity, spans, tokens
from .prompt.assemble import (
    Assembly,
    Budget,
    Order,
    Turn,
    assemble,
    fixed_texts,
)
from .prompt.lore import SCAN_TURNS, lore_scenes
from .prompt.tokens import TokenCounter, encoding_for_model, quicktok_counter
from .retrieval.hybrid import CanonIndex, Hit, Mode

log = logging.getLogger(__name__)

CANDIDATES = 12  # scenes retrieved per turn; the canon budget decides how many are used
EMPTY_RETRIES = 2  # new samples when a reply is empty after clean-up
RETRY_HEAT = 0.25  # each retry samples this much hotter (a new seed alone often repeats itself)
MAX_RETRY_TEMPERATURE = 1.3
RETRY_FLOOR_S = 2.0  # retries may always take this long, however quick the first try was
RETRY_PRESENCE = 0.5  # presence penalty added per retry: away from the tokens just read
ECHO_SIMILAR = 0.8  # a reply this alike (difflib ratio) to the user's line or a reply is an echo
ECHO_REPLIES = 4  # the character's latest replies a new one must not say again
ECHO_MIN_CHARS = 6  # shorter lines are not guarded: "你好" may well be answered "你好呀"
# A reply that recites this many tokens of its own prompt (persona, rules, the canon's
# instructions) in a row is cut where the recital starts: a clause, not a shared phrase
RECITE_CJK, RECITE_WORDS = 10, 8
_TRAILING = "，、,;；:：—-–… \n\t"
_BOUNDARY = "。！？!?\n，,；;."
HOLD_CLAUSE_CHARS = 40  # a clause longer than this streams before its end
STOP_SPEAKERS = 40  # other speakers whose "Name:" stops generation (the most frequent first)
_PREFIX = re.compile(r"^\s*(?P<name>[^:：「」\n]{1,24}?)\s*[:：]\s*")
_INLINE = re.compile(r"[」\s](?P<name>[^:：「」\s]{1,24}?)\s*[:：]\s*「")
_STAGE_TAIL = re.compile(r"」\s*(?:[（(][^」]*[)）]\s*)?$")
_HOLD = 24  # chars of an unfinished line held back while it may still turn into "name:"


def _join(a: str, b: str) -> str:
    if not a or not b:
        return a + b
    cjk = ord(a[-1]) > 0x2E80 or ord(b[0]) > 0x2E80
    return a + ("" if cjk else " ") + b


@dataclass
class ReplyCleaner:
    """Post-processing of a reply: drops the character's own name prefix and the
    quote brackets, merges the character's consecutive lines into one, and cuts the
    reply where the model starts speaking for someone else."""

    self_names: frozenset[str]
    other_names: frozenset[str]

    @classmethod
    def for_character(cls, character: Character, extra: Iterable[str] = ()) -> ReplyCleaner:
        others = {ln.speaker.strip() for s in character.scenes for ln in s.lines}
        others |= {
            character.user_role,
            *character.narrators,
            "旁白",
            "narrator",
            "Narrator",
            *extra,
        }
        selves = frozenset({character.name, *character.aliases})
        return cls(selves, frozenset(o for o in others if o and o not in selves))

    def _line(self, line: str) -> tuple[str, bool]:
        """A cleaned line and whether the reply stops here (someone else speaks)."""
        m = _PREFIX.match(line)
        if m:
            name, rest = m["name"].strip(), line[m.end() :]
            if name in self.self_names:
                line = rest
            elif name in self.other_names or rest.startswith("「"):
                return "", True
        inline = _INLINE.search(line)
        if inline and inline["name"] not in self.self_names:
            line, stop = line[: inline.start() + 1], True
        else:
            stop = False
        line = line.strip()
        if line.startswith("「"):
            line = line[1:]
            tail = _STAGE_TAIL.search(line)
            if tail:
                line = line[: tail.start()] + line[tail.start() + 1 :]
        return line.strip(), stop

    def clean(self, raw: str) -> str:
        out = ""
        for line in raw.splitlines():
            text, stop = self._line(line)
            out = _join(out, text)
            if stop:
                break
        return out.strip()

    def stream(self, chunks: Iterable[str]) -> Iterator[str]:
        """Clean a stream as it comes; what is yielded joins to ``clean(whole)`` in the
        usual case (an unfinished line is held back while it could still change)."""
        raw, sent = "", ""
        for chunk in chunks:
            raw += chunk
            cut = raw.rfind("\n") + 1
            tail = raw[cut:]
            if len(tail) < _HOLD and not re.search(r"[:：]", tail):
                visible = raw[:cut]
            else:
                close = tail.rfind("」")
                visible = raw[: cut + close] if close != -1 else raw
            text = self.clean(visible)
            if text.startswith(sent) and len(text) > len(sent):
                yield text[len(sent) :]
                sent = text
        final = self.clean(raw)
        if final.startswith(sent) and len(final) > len(sent):
            yield final[len(sent) :]


class _OutOfTime(Exception):
    """A retry ran past the time a reply may take."""


@dataclass
class TurnReport:
    line: Turn
    assembly: Assembly
    hits: list[Hit]
    reply: str = ""
    raw: str = ""  # what the model wrote, before clean-up (the last try's)
    tries: int = 0


def speaker_stops(character: Character, limit: int = STOP_SPEAKERS) -> tuple[str, ...]:
    """Stop strings for everyone but the character: the user role, the narrators and the
    canon's other speakers (the most frequent ``limit``), each as a new line's ``Name:`` and
    as ``Name:「`` in both colon widths, so the model stops where it would speak for them."""
    selves = {character.name, *character.aliases}
    counts = Counter(
        ln.speaker.strip() for s in character.scenes for ln in s.lines if ln.speaker.strip()
    )
    names = [character.user_role, *character.narrators]
    names += [n for n, _ in counts.most_common() if n not in selves][:limit]
    stops: list[str] = []
    for name in dict.fromkeys(n for n in names if n and n not in selves):
        stops += [f"\n{name}:", f"\n{name}：", f"{name}:「", f"{name}：「"]
    return tuple(stops)


def retry_params(params: GenerationParams, attempt: int) -> GenerationParams:
    """Sampling for retry ``attempt`` (1, 2, ...): another seed, a higher temperature and a
    presence penalty, so the retry neither writes the same text again nor says back what
    it has just read."""
    seed = random.randrange(1 << 31) if params.seed is None else params.seed + 7919 * attempt
    heat = min(params.temperature + RETRY_HEAT * attempt, MAX_RETRY_TEMPERATURE)
    presence = params.presence_penalty + RETRY_PRESENCE * attempt
    return replace(
        params, seed=seed, temperature=max(heat, params.temperature), presence_penalty=presence
    )


@dataclass(frozen=True)
class Recital:
    """What a reply must not recite: the n-grams of the prompt's fixed text, less those
    the canon also has (a catchphrase the persona quotes may be said)."""

    n: int
    source: frozenset[Gram]
    allowed: frozenset[Gram]

    @classmethod
    def for_character(cls, character: Character) -> Recital:
        cjk = character.language.lower().startswith(("zh", "ja"))
        n = RECITE_CJK if cjk else RECITE_WORDS
        canon = (ln.text for sc in character.scenes for ln in sc.lines)
        return cls(n, frozenset(grams_of(fixed_texts(character), n)), frozenset(grams_of(canon, n)))


def unrecited(pieces: Iterable[str], recital: Recital, line: str = "") -> Iterator[str]:
    """``pieces`` as they come, cut where the reply starts reciting its prompt: the clauses
    before the recital are kept (a reply that is all recital ends up empty) and the stream
    stops there. The clause that holds the last ``n - 1`` tokens is held back until it
    cannot start one, so the reply streams clause by clause."""
    allowed = set(recital.allowed) | grams(tokens(line), recital.n)
    keep = recital.n - 1
    text, sent = "", 0
    for piece in pieces:
        text += piece
        found = spans(text)
        run = shared_run([t for t, _, _ in found], set(recital.source), recital.n, allowed)
        if run is not None:  # cut at the clause boundary before the recital
            start = found[run.start][1]
            cut = max(text.rfind(ch, 0, start + 1) for ch in _BOUNDARY) + 1
            rest = text[sent:cut].rstrip(_TRAILING) if cut > sent else ""
            if rest:
                yield rest
            log.info("reply cut where it recites the prompt: %r", run.text)
            return
        hold = found[len(found) - keep][1] if len(found) > keep else 0
        # whole clauses, the mark that ends one going with the next; a clause that runs on
        # and on is let go in part, so the reply never stalls
        clause = max(0, *(text.rfind(ch, 0, hold) for ch in _BOUNDARY))
        if hold - clause <= HOLD_CLAUSE_CHARS:
            hold = clause
        if hold > sent:
            yield text[sent:hold]
            sent = hold
    if sent < len(text):
        yield text[sent:]


class _Echo(Exception):
    """The reply was the user's line, or an earlier reply, said again."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def unechoed(pieces: Iterable[str], line: str, replies: Sequence[str] = ()) -> Iterator[str]:
    """``pieces`` as they come, except a reply that says the user's ``line`` or one of the
    earlier ``replies`` again: while the reply so far reads like the start of one it is held
    back, and if it ends as one (``ECHO_SIMILAR`` alike) ``_Echo`` is raised with nothing
    shown. A reply that goes its own way is released at once. A short line is not guarded
    ("你好" may well be answered "你好呀"); an earlier reply of two characters is."""
    sources = [p for p in [plain(line)] if len(p) >= ECHO_MIN_CHARS]
    sources += [p for p in (plain(r) for r in replies) if len(p) >= 2]
    held = ""
    released = False
    for piece in pieces:
        if not released:
            held += piece
            h = plain(held)
            if any(_alike(h, src[: len(h)]) for src in sources):
                continue
            released, piece = True, held
        yield piece
    if not released and held:
        if any(_alike(plain(held), src) for src in sources):
            raise _Echo(held)
        yield held


def _alike(a: str, b: str) -> bool:
    return similarity(a, b) >= ECHO_SIMILAR


@dataclass
class Session:
    character: Character
    index: CanonIndex | None
    llm: LLM
    budget: Budget | None = None
    counter: TokenCounter | None = None
    order: Order = "classic"
    retrieval_mode: Mode = "hybrid"
    params: GenerationParams = field(default_factory=GenerationParams)
    history: list[Turn] = field(default_factory=list)
    last: TurnReport | None = None
    pending: TurnReport | None = None  # the turn being streamed by say(), until it is recorded

    def __post_init__(self) -> None:
        if self.budget is None:
            window = self.llm.context_window
            reply = self.params.max_tokens
            cap = self.llm.canon_budget
            self.budget = (
                Budget.for_context(window, reply, cap)
                if window
                else Budget(canon=min(Budget.canon, cap or Budget.canon))
            )
        if self.counter is None:
            self.counter = self.llm.token_counter() or quicktok_counter(
                encoding_for_model(self.llm.model)
            )
        self.cleaner = ReplyCleaner.for_character(self.character)
        self.recital = Recital.for_character(self.character)
        # the caller's stops first (an endpoint may take only a few), then every other speaker
        stops = dict.fromkeys([*self.params.stop, *speaker_stops(self.character)])
        self.params = replace(self.params, stop=tuple(stops))

    def prepare(
        self, text: str, as_role: str | None = None, exclude: Collection[str] = ()
    ) -> TurnReport:
        """Retrieve and assemble the prompt for a line, without calling the backend.
        ``exclude`` holds scene ids kept out of retrieval (an evaluation's held-out scene)."""
        line = Turn(as_role or self.character.user_role, text)
        hits = (
            self.index.search(text, CANDIDATES, self.retrieval_mode, exclude=exclude)
            if self.index
            else []
        )
        assert self.budget is not None and self.counter is not None
        recent = [text, *(t.text for t in self.history[-SCAN_TURNS:])]
        assembly = assemble(
            self.character,
            [*lore_scenes(self.character, recent), *(h.scene for h in hits)],
            self.history,
            line,
            self.budget,
            self.counter,
            self.order,
        )
        return TurnReport(line, assembly, hits)

    def say(
        self,
        text: str,
        as_role: str | None = None,
        report: TurnReport | None = None,
        exclude: Collection[str] = (),
    ) -> Iterator[str]:
        """Stream the character's reply. The turn is recorded only once the reply is
        complete: a failed or interrupted reply leaves the history as it was. ``report`` is
        the result of ``prepare(text, as_role, exclude)`` when the caller already has it."""
        if not text.strip():
            raise InputError("empty message: say something")
        if report is None:
            report = self.prepare(text, as_role, exclude)
        self.pending = report
        raw: list[str] = []

        def tee(params: GenerationParams, deadline: float | None) -> Iterator[str]:
            for chunk in self.llm.stream(report.assembly.messages, params):
                raw.append(chunk)
                yield chunk
                if deadline is not None and time.monotonic() > deadline:
                    raise _OutOfTime  # a retry past its time: no half-held text is shown

        mine = [t.text for t in self.history if self.character.is_self(t.speaker)]
        recent = mine[-ECHO_REPLIES:]
        started = time.monotonic()
        deadline: float | None = None
        params = self.params
        pieces: list[str] = []
        cut = False
        echo = ""
        for attempt in range(EMPTY_RETRIES + 1):
            raw.clear()
            report.tries = attempt + 1
            try:
                cleaned = self.cleaner.stream(tee(params, deadline))
                for piece in unechoed(unrecited(cleaned, self.recital, text), text, recent):
                    pieces.append(piece)
                    yield piece
            except _OutOfTime:
                cut = True
            except _Echo as said_again:
                echo = said_again.text
            report.raw = "".join(raw)
            if pieces or cut:
                break
            # Nothing survived clean-up (the model spoke only for others, wrote nothing, or
            # said the user's line back): sample again, differently, but spend at most one
            # more reply's worth of time.
            log.info("no reply after clean-up (try %d): %r", attempt + 1, report.raw[:80])
            if deadline is None:
                deadline = time.monotonic() + max(time.monotonic() - started, RETRY_FLOOR_S)
            if time.monotonic() >= deadline:
                break
            params = retry_params(self.params, attempt + 1)
        if not pieces and echo:  # an echo every time: better said than nothing at all
            pieces.append(echo)
            yield echo
            cut = True
        if not pieces:
            self.pending = None
            seen = f": it wrote {report.raw.strip()[:60]!r}" if report.raw.strip() else ""
            raise NoReplyError(
                f"the model gave no answer as {self.character.name} after {report.tries} "
                f"tries{seen}. Say it another way, or try again"
            )
        self.record(report, "".join(pieces))  # what was shown

    def record(self, report: TurnReport, reply: str) -> None:
        """Add a turn and its reply to the history (say() does; a UI does for a stopped reply)."""
        report.reply = reply
        a = report.assembly
        if a.turn_canon:  # cache order: the line stays in history with the canon sent with it
            report.line = Turn(
                report.line.speaker, report.line.text, a.turn_canon, a.turn_scene_ids
            )
        self.history.append(report.line)
        self.history.append(Turn(self.character.name, reply))
        self.last = report
        self.pending = None

    def reply(self, text: str, as_role: str | None = None, exclude: Collection[str] = ()) -> str:
        for _ in self.say(text, as_role, exclude=exclude):
            pass
        assert self.last is not None
        return self.last.reply
