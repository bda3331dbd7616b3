"""One conversation: retrieval -> prompt assembly -> backend -> a cleaned, recorded reply."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

from .assistant_talk import first_assistant_talk
from .backends.base import LLM, GenerationParams
from .character.model import Character, Scene, cjk_language
from .errors import InputError, NoReplyError
from .identity import WrongSelf, alternation
from .memory import (
    PIECE_TOKENS,
    SUMMARY_TOKENS,
    Memory,
    clean_summary,
    summary_messages,
    transcript,
)
from .overlap import Gram, grams, grams_of, plain, shared_run, similarity, spans, tokens
from .prompt.assemble import (
    Assembly,
    Budget,
    MemoryView,
    Order,
    Turn,
    assemble,
    fixed_texts,
    history_window,
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
ECHO_REPLIES = 8  # the character's latest replies a new one must not say again (a chat
# of 8 turns is where a fan notices the same sentence twice; the gate counts it over the chat)
ECHO_MIN_CHARS = 6  # shorter lines are not guarded: "你好" may well be answered "你好呀"
ECHO_HOLD_CHARS = 120  # a longer user line is guarded only against a reply that starts like it
TALK_HOLD_TOKENS = 12  # tokens of a reply held back before any is shown: refusals start early
TALK_MIN_KEPT = 3  # fewer tokens before assistant talk ("Yes, I'm a chatbot") are no reply
# A reply that recites this many tokens of a canon line in a row, or PROMPT_RECITE_* of its
# own prompt (persona, rules, the canon's instructions), is cut where the recital starts: a
# clause, not a shared phrase. The gate counts copies and leaks at the same lengths.
RECITE_CJK, RECITE_WORDS = 10, 8
RECITALS_KEPT = 8  # recitals kept for sets of left-out scenes (each holds the canon's runs)
PROMPT_RECITE_CJK, PROMPT_RECITE_WORDS = 8, 7
_TRAILING = "，、,;；:：—-–… \n\t"
_BOUNDARY = "。！？!?\n，,；;."
HOLD_CLAUSE_CHARS = 40  # a clause longer than this streams before its end
STOP_SPEAKERS = 40  # other speakers whose "Name:" stops generation (the most frequent first)
_PREFIX = re.compile(r"^\s*(?P<name>[^:：「」\n]{1,24}?)\s*[:：]\s*")
_INLINE = re.compile(r"[」\s](?P<name>[^:：「」\s]{1,24}?)\s*[:：]\s*「")
_STAGE_TAIL = re.compile(r"」\s*(?:[（(][^」]*[)）]\s*)?$")
# a name alone before a colon: one CJK word, or one capitalised word ("Sheldon:"); a header
# such as "What I love most:" has spaces and is a line of the reply
_LABEL_ONLY = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff·・]{1,12}|[A-Z][\w'-]{0,23}")
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
    LONG_LINE = 512  # chars of an unfinished line that are cleaned again with every chunk
    LONG_STEP = 8  # a longer line is cleaned again once it has grown by this fraction
    # text that cleaning a line shown as it comes only appends: no line break (what
    # str.splitlines breaks at), colon (a name), quote bracket or parenthesis (stage direction)
    _PLAIN = re.compile(r"[^\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029:：「」()（）]+")

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

    @cached_property
    def _role_play(self) -> re.Pattern[str]:
        """A line that starts by saying whom it plays: "As Sheldon, I…", "作为林小满，我…"."""
        names = alternation(self.self_names)
        return re.compile(rf"^\s*(?:(?i:as)\s+|作为|身为)(?:{names})\s*[,，、:：]\s*")

    def _line(self, line: str) -> tuple[str, bool]:
        """A cleaned line and whether the reply stops here (someone else speaks)."""
        m = _PREFIX.match(line)
        if m:
            name, rest = m["name"].strip(), line[m.end() :]
            if name in self.self_names:
                line = rest
            elif name in self.other_names or rest.startswith("「"):
                return "", True
            elif not rest.strip() and _LABEL_ONLY.fullmatch(name):
                return "", True  # "蓝猫煤球：" and nothing said: a speaker's label, not a line
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
        if self.self_names:
            line = self._role_play.sub("", line, count=1)
        return line.strip(), stop

    def _fold(self, last: str, lines: Iterable[str]) -> tuple[str, bool, str]:
        """Lines cleaned and joined onto a text whose last character is ``last`` ("" while
        there is none): the text they add (with its separator), whether the reply stops
        there, and the new last character. ``clean`` folds from nothing; ``stream`` folds
        each line once, as it is finished."""
        pieces: list[str] = []
        stop = False
        for line in lines:
            text, stop = self._line(line)
            if text:
                pieces.append(_join(last, text)[len(last) :])
                last = text[-1]
            if stop:
                break
        return "".join(pieces), stop, last

    def clean(self, raw: str) -> str:
        return self._fold("", raw.splitlines())[0].strip()

    def stream(self, chunks: Iterable[str]) -> Iterator[str]:
        """Clean a stream as it comes; what is yielded joins to ``clean(whole)`` in the
        usual case (an unfinished line is held back while it could still change).

        Each chunk yields what cleaning all the text so far would add to what was yielded,
        at the cost of the unfinished line only: a finished line is cleaned once, and
        plain text added to a line already shown as it comes is passed on without cleaning
        the line again (``_line`` would only append it, less trailing spaces). A line
        longer than ``LONG_LINE`` characters is cleaned again only once it has grown by a
        ``LONG_STEP``-th, so that a reply which never ends its line stays linear too."""
        last, stopped = "", False  # the finished lines: their text's last character; a stop
        fresh = ""  # the finished lines' text since the last piece yielded
        held = ""  # the unfinished line's text yielded with the last piece
        dead = False  # what was yielded is no longer the start of the reply: nothing follows
        tail: list[str] = []  # the unfinished line, in pieces
        size = looked = 0  # its length; its length when it was last cleaned
        close = -1  # where its last "」" is
        frozen = False  # the line is shown up to that "」": more text without one changes nothing
        quick: list[str] | None = None  # plain pieces passed on since it was cleaned, if allowed
        spaces: list[str] = []  # and the spaces after them, shown once more text follows

        for chunk in chunks:
            if stopped or dead or not chunk:
                continue  # the stream is still read to its end, as the caller expects
            if quick is not None and self._PLAIN.fullmatch(chunk):
                tail.append(chunk)
                size += len(chunk)
                body = chunk.rstrip()
                if not body:
                    spaces.append(chunk)
                    continue
                piece = "".join(spaces) + body if spaces else body
                spaces = [chunk[len(body) :]] if len(body) < len(chunk) else []
                quick.append(piece)
                yield piece
                continue
            if quick:
                held += "".join(quick)
            quick, spaces = None, []
            newline = chunk.rfind("\n")
            if newline == -1:
                at = chunk.rfind("」")
                if at != -1:
                    close, frozen = size + at, False
                tail.append(chunk)
                size += len(chunk)
                if frozen or (size > self.LONG_LINE and size - looked < size // self.LONG_STEP):
                    continue
            else:
                tail.append(chunk[: newline + 1])
                added, stopped, last = self._fold(last, "".join(tail).splitlines())
                fresh += added
                if not (fresh.startswith(held) or held.startswith(fresh)):
                    dead = True  # finished lines never change: no text can start as yielded
                    continue
                rest = chunk[newline + 1 :]
                tail, size, close = [rest], len(rest), rest.rfind("」")
            looked = size
            line = "".join(tail)
            tail = [line]
            extra, lines, stop, frozen = "", [], False, False
            if not stopped and (size >= _HOLD or ":" in line or "：" in line):
                lines = (line[:close] if close != -1 else line).splitlines()
                extra, stop, _ = self._fold(last, lines)
                frozen = close != -1
            text = fresh + extra
            if text.startswith(held) and len(text) > len(held):
                yield text[len(held) :]
                fresh, held = "", extra
            if fresh == "" and held == extra != "" and not stop and lines == [line]:
                quick, spaces = [], [line[len(line.rstrip()) :]]  # held is line, stripped
        if quick:
            held += "".join(quick)
        if not (stopped or dead):
            text = fresh + self._fold(last, "".join(tail).splitlines())[0]
            if text.startswith(held) and len(text) > len(held):
                yield text[len(held) :]


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
    exclude: frozenset[str] = frozenset()  # scene ids kept out of retrieval
    lore: tuple[Scene, ...] = ()  # the lore entries the turn triggered, as scenes


def other_speakers(character: Character, limit: int = STOP_SPEAKERS) -> list[str]:
    """Everyone but the character: the user role, the narrators and the canon's other
    speakers (the most frequent ``limit``)."""
    selves = {character.name, *character.aliases}
    counts = character.speaker_counts()
    names = [character.user_role, *character.narrators]
    names += [n for n, _ in counts.most_common() if n not in selves][:limit]
    return list(dict.fromkeys(n for n in names if n and n not in selves))


def speaker_stops(character: Character, limit: int = STOP_SPEAKERS) -> tuple[str, ...]:
    """Stop strings for everyone but the character (``other_speakers``)."""
    return stops_for(other_speakers(character, limit))


def stops_for(names: Iterable[str]) -> tuple[str, ...]:
    """Each name as a new line's ``Name:`` and as ``Name:「`` in both colon widths, so the
    model stops where it would speak for them."""
    return tuple(s for n in names for s in (f"\n{n}:", f"\n{n}：", f"{n}:「", f"{n}：「"))


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
    """What a reply must not recite: a run of ``n`` tokens of the prompt's fixed text
    (persona, standing rules, the canon block's instructions) or of the canon itself. What
    the persona quotes from the canon is the character's own phrase and may be said; a
    shorter canon line said whole is a classic line (the web page shows its frame)."""

    n: int
    prompt: frozenset[Gram]
    canon: frozenset[Gram]
    # a shorter run of the prompt's own text is a recital too (the gate's leak), unless the
    # canon says it as well: ``prompt_n`` tokens, the prompt's and the canon's grams of it
    prompt_n: int = 0
    prompt_short: frozenset[Gram] = frozenset()
    canon_short: frozenset[Gram] = frozenset()

    @cached_property
    def source(self) -> frozenset[Gram]:
        return self.prompt | self.canon

    @cached_property
    def allowed(self) -> frozenset[Gram]:  # catchphrases: canon runs the persona quotes
        return self.prompt & self.canon

    @classmethod
    def for_character(cls, character: Character, exclude: Collection[str] = ()) -> Recital:
        """``exclude``: scene ids kept out of the prompt (an evaluation's held-out scene),
        whose lines the model cannot have read and so cannot copy."""
        cjk = cjk_language(character.language)
        n, short = (RECITE_CJK, PROMPT_RECITE_CJK) if cjk else (RECITE_WORDS, PROMPT_RECITE_WORDS)
        lines = [ln.text for sc in character.scenes if sc.id not in exclude for ln in sc.lines]
        fixed = fixed_texts(character)
        return cls(
            n,
            frozenset(grams_of(fixed, n)),
            frozenset(grams_of(lines, n)),
            short,
            frozenset(grams_of(fixed, short)),
            frozenset(grams_of(lines, short)),
        )


Talk = Callable[[str], "tuple[int, str] | None"]  # where out-of-character talk starts, and what


def unrecited(
    pieces: Iterable[str],
    recital: Recital,
    line: str = "",
    talk: Talk = first_assistant_talk,
) -> Iterator[str]:
    """``pieces`` as they come, cut where the reply starts reciting its prompt or talking
    out of character (``talk``: by default an assistant's refusal, "as an AI", "feel free
    to ask"): the clauses before are kept and the stream stops there. Nothing is let go
    before the reply has ``TALK_HOLD_TOKENS`` tokens (a refusal shows its hand in its first
    words), and then the clause that holds the last ``n - 1`` tokens is held back until it
    cannot start a recital, so the reply streams clause by clause. A reply that is out of
    character from its first words raises ``_Unfit``: nothing is shown and the caller may
    sample again."""
    allowed = recital.allowed | grams(tokens(line), recital.n)
    short_allowed = recital.canon_short | grams(tokens(line), recital.prompt_n or 1)
    keep = max(recital.n, recital.prompt_n) - 1
    text, sent = "", 0
    for piece in pieces:
        text += piece
        found = spans(text)
        toks = [t for t, _, _ in found]
        run = shared_run(toks, recital.source, recital.n, allowed)
        leaked = False
        if recital.prompt_n:
            leak = shared_run(toks, recital.prompt_short, recital.prompt_n, short_allowed)
            if leak is not None and (run is None or leak.start < run.start):
                run, leaked = leak, True
        start = found[run.start][1] if run is not None else None
        said = talk(text)
        if said is not None and (start is None or said[0] < start):
            start = said[0]
        again = _said_again(toks, recital.n)
        if again is not None and (start is None or found[again][1] < start):
            start = found[again][1]
            run, said = None, None
            log.info("reply cut where it loops: %r", text[start : start + 60])
        if start is not None:  # cut at the clause boundary before it
            cut = max(text.rfind(ch, 0, start + 1) for ch in _BOUNDARY) + 1
            rest = text[sent:cut].rstrip(_TRAILING) if cut > sent else ""
            if run is None and said is None:  # a loop: what it said before stays
                pass
            elif run is not None and found[run.start][1] == start:
                ran = toks[run.start : run.end]
                if leaked or any(
                    tuple(ran[i : i + recital.n]) in recital.prompt for i in range(len(ran))
                ):
                    log.info("reply cut where it recites the prompt: %r", run.text)
                else:  # a canon line copied: better said than nothing, if every try does
                    log.info("reply cut where it copies the canon: %r", run.text)
                    if not sent and len(tokens(rest)) < TALK_MIN_KEPT:
                        raise _Unfit(text + "".join(pieces), "copy")
            else:
                assert said is not None
                log.info("reply cut where it talks out of character: %r", said[1])
                if not sent and len(tokens(rest)) < TALK_MIN_KEPT:  # "Yes, I'm a chatbot"
                    raise _Unfit(text + "".join(pieces), "talk")  # whole, as every try may be
            if rest:
                yield rest
            return
        if len(found) < TALK_HOLD_TOKENS:
            continue
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


def _said_again(toks: Sequence[str], n: int) -> int | None:
    """Where a reply starts saying ``n`` tokens in a row that it said before (a loop: the
    same sentence of a biography over and over), or None."""
    first: dict[Gram, int] = {}
    for i in range(len(toks) - n + 1):
        gram = tuple(toks[i : i + n])
        j = first.setdefault(gram, i)
        if j + n <= i:
            return i
    return None


class _Unfit(Exception):
    """The reply was the user's line or an earlier reply said again (``kind`` "echo"), an
    assistant's refusal or someone else's name ("talk") or a canon line ("copy"): nothing of
    it was shown."""

    def __init__(self, text: str, kind: str = "echo") -> None:
        super().__init__(text)
        self.text = text
        self.kind = kind


def unechoed(pieces: Iterable[str], line: str, replies: Sequence[str] = ()) -> Iterator[str]:
    """``pieces`` as they come, except a reply that says the user's ``line`` or one of the
    earlier ``replies`` again: while the reply so far could still end as one it is held
    back, and if it does (``ECHO_SIMILAR`` alike) ``_Unfit`` is raised with nothing shown.
    The user's line may come back behind a word of its own ("Yes, I saw you on my way
    here"), so a reply is held until it is too long, or too different, to end as that line;
    an earlier reply is held only while the reply starts like it. A short line is not
    guarded ("你好" may well be answered "你好呀"); an earlier reply of two characters is."""
    said = plain(line)
    said = said if len(said) >= ECHO_MIN_CHARS else ""
    sources = [p for p in (plain(r) for r in replies) if len(p) >= 2]
    if said:
        sources.append(said)
    held = ""
    released = False
    for piece in pieces:
        if not released:
            held += piece
            h = plain(held)
            if (said and _may_become(h, said)) or any(_alike(h, s[: len(h)]) for s in sources):
                continue
            released, piece = True, held
        yield piece
    if not released and held:
        if any(_alike(plain(held), src) for src in sources):
            raise _Unfit(held)
        yield held


def _may_become(h: str, said: str) -> bool:
    """Whether a reply that starts ``h`` may still end ``ECHO_SIMILAR`` alike to ``said``:
    it is not too long yet, and what of it the line lacks is not too much (a difflib ratio
    of r between the whole reply a and the line b needs at most (2/r - 1)|b| unmatched
    characters in the reply, and unmatched characters stay unmatched, near enough)."""
    if len(said) > ECHO_HOLD_CHARS or len(h) > (2 / ECHO_SIMILAR - 1) * len(said):
        return False
    matched = similarity(h, said) * (len(h) + len(said)) / 2
    return len(h) - matched <= (2 / ECHO_SIMILAR - 2) * len(said)


def _alike(a: str, b: str) -> bool:
    return similarity(a, b) >= ECHO_SIMILAR


def _worked_out(character: Character) -> tuple[ReplyCleaner, Recital, WrongSelf, list[str]]:
    """What every session with ``character`` works out from it (clean-up, recital checks,
    the wrong-self check, the other speakers), once per character object: a server makes a
    session per request (8 ms of work for 林小满 otherwise). Kept on the object, as
    ``functools.cached_property`` keeps its values: a character is not changed once
    loaded (``with_dials`` and ``recast`` make new ones)."""
    found = character.__dict__.get("_session_parts")
    if found is None:
        found = (
            ReplyCleaner.for_character(character),
            Recital.for_character(character),
            WrongSelf.for_character(character),
            other_speakers(character),
        )
        character.__dict__["_session_parts"] = found
    return found


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
    # a group scene: the names of the others in it; retrieved scenes where one of them speaks
    # come first (the canon has these characters together), in their own order
    together: frozenset[str] = frozenset()
    # what the conversation remembers beyond its history window (None: nothing)
    memory: Memory | None = None

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
        self.cleaner, self.recital, self.wrong_self, self.others = _worked_out(self.character)
        # the recital without some scenes, by the scenes left out: shared with the copies an
        # evaluation or a dataset makes of this session (eval.runner.fresh_session)
        self.recitals: dict[frozenset[str], Recital] = {}
        self.recitals_lock = threading.Lock()  # copies run in threads (workers)
        # the caller's stops first (an endpoint may take only a few), then every other speaker
        stops = dict.fromkeys([*self.params.stop, *stops_for(self.others)])
        # no reply begins like the canon block ("下面是李云龙在原作里的经典片段…", recited back
        # from the system message right before the line in the split order)
        header = fixed_texts(self.character)[-1]
        avoid = dict.fromkeys([*self.params.avoid, header])
        self.params = replace(self.params, stop=tuple(stops), avoid=tuple(avoid))

    def _with_others(self, scene: Scene) -> bool:
        return any(ln.speaker.strip() in self.together for ln in scene.lines)

    def recast(self, character: Character) -> Session:
        """This session (backend, budgets, order, parameters, history so far) with
        ``character`` in it instead: the same character with other dials, say. What is worked
        out from the character (clean-up, stops, recital checks) is worked out again."""
        return replace(self, character=character, history=list(self.history), last=None)

    def _recital_without(self, held_out: frozenset[str]) -> Recital:
        """The recital check of the canon without ``held_out`` scenes (which the model has
        not read, so cannot copy), worked out once per set of scenes."""
        if not held_out:
            return self.recital
        with self.recitals_lock:
            recital = self.recitals.get(held_out)
        if recital is None:
            recital = Recital.for_character(self.character, held_out)
            with self.recitals_lock:
                if len(self.recitals) >= RECITALS_KEPT:  # an eval leaves out a scene per item
                    self.recitals.pop(next(iter(self.recitals)))
                self.recitals[held_out] = recital
        return recital

    def prepare(
        self, text: str, as_role: str | None = None, exclude: Collection[str] = ()
    ) -> TurnReport:
        """Retrieve and assemble the prompt for a line, without calling the backend.
        ``exclude`` holds scene ids kept out of retrieval (an evaluation's held-out scene)."""
        line = Turn(as_role or self.character.user_role, text)
        embedder = self.memory.embedder if self.memory is not None else None
        if embedder is not None and text.strip() and not embedder.knows_query(text):
            embedder.remember_queries([text])  # one embedding for the canon and the memory
        hits = (
            self.index.search(text, CANDIDATES, self.retrieval_mode, exclude=exclude)
            if self.index
            else []
        )
        if self.together:
            hits = sorted(hits, key=lambda h: not self._with_others(h.scene))
        assert self.budget is not None and self.counter is not None
        recent = [text, *(t.text for t in self.history[-SCAN_TURNS:])]
        lore = tuple(lore_scenes(self.character, recent))
        assembly = assemble(
            self.character,
            [*lore, *(h.scene for h in hits)],
            self.history,
            line,
            self.budget,
            self.counter,
            self.order,
            memory=self._memory_view(text),
        )
        return TurnReport(line, assembly, hits, exclude=frozenset(exclude), lore=lore)

    def _memory_view(self, text: str) -> MemoryView | None:
        if self.memory is None:
            return None
        self.memory.index(self.history)
        return self.memory.view(text, self.history, self.character)

    def window(self) -> int:
        """The first turn of the history the next prompt sends (the turns before it are
        the memory's)."""
        assert self.budget is not None and self.counter is not None
        folded = self.memory.folded if self.memory is not None else 0
        return folded + history_window(
            self.character, self.history[folded:], self.budget, self.counter, self.order
        )

    def remember(self, params: GenerationParams | None = None) -> str:
        """Fold the turns that have left the history window into the memory's summary, a
        block at a time (a backend call each), and condense the summary once it outgrows its
        size (one more). Run between turns: the CLI does it while the user types, the
        server after the reply is sent. Says what it did."""
        memory, counter = self.memory, self.counter
        if memory is None or counter is None:
            return "none"
        params = params or GenerationParams(max_tokens=2 * PIECE_TOKENS, temperature=0.3, seed=0)
        done = []
        while (span := memory.due(self.history, self.window())) is not None:
            text = transcript(self.history[span[0] : span[1]], self.character)
            messages = summary_messages(self.character, text, PIECE_TOKENS)
            raw = "".join(self.llm.stream(messages, params))
            memory.fold(span, clean_summary(raw, counter, PIECE_TOKENS, text))
            done.append(f"folded turns {span[0] + 1}-{span[1]}")
            if memory.condense_due(counter):
                older = "\n".join(memory.pieces[:-1])
                messages = summary_messages(self.character, older, SUMMARY_TOKENS // 2)
                raw = "".join(self.llm.stream(messages, params))
                memory.condensed(clean_summary(raw, counter, SUMMARY_TOKENS // 2, older))
                done.append("condensed the summary")
        return "; ".join(done) or "none"

    def warm(self) -> str:
        """Have the backend ready for this character: the start every prompt of every chat
        with them shares (the persona's message: persona and rules) kept, loaded where the
        backend saved it, or evaluated now, so that a reply evaluates only what follows.
        Each turn does this first: a backend that served another character since (a server,
        a page with tabs) loads the persona instead of evaluating it. Says what it did."""
        assert self.budget is not None and self.counter is not None
        line = Turn(self.character.user_role, "…")
        persona = assemble(self.character, [], [], line, self.budget, self.counter, self.order)
        return self.llm.warm(persona.messages[:1])

    def prefill(self) -> str:
        """After a reply, while the user reads it and types: have the backend evaluate the
        start of the next prompt (persona and the history with this reply in it). The next
        reply then evaluates only its canon and line, and a turn where the kept history
        steps costs no more than any other. Says what the backend did."""
        if not self.history or self.order == "classic":  # classic: the canon leads the prompt
            return "none"
        line = Turn(self.character.user_role, "…")
        return self.llm.prefill(self._without_canon(line)[:-1])

    def say(
        self,
        text: str,
        as_role: str | None = None,
        report: TurnReport | None = None,
        exclude: Collection[str] = (),
    ) -> Generator[str, None, None]:
        """Stream the character's reply. The turn is recorded only once the reply is
        complete: a failed or interrupted reply leaves the history as it was. ``report`` is
        the result of ``prepare(text, as_role, exclude)`` when the caller already has it."""
        if not text.strip():
            raise InputError("empty message: say something")
        if report is None:
            report = self.prepare(text, as_role, exclude)
        self.pending = report
        self.warm()
        raw: list[str] = []

        def tee(
            messages: list[dict[str, str]], params: GenerationParams, deadline: float | None
        ) -> Generator[str, None, None]:
            stream = self.llm.stream(messages, params)
            try:
                for chunk in stream:
                    raw.append(chunk)
                    yield chunk
                    if deadline is not None and time.monotonic() > deadline:
                        raise _OutOfTime  # a retry past its time: no half-held text is shown
            finally:  # a reply cut short ends its generation now (and frees a shared model)
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

        mine = [t.text for t in self.history if self.character.is_self(t.speaker)]
        recent = mine[-ECHO_REPLIES:]
        held_out = report.exclude
        recital = self._recital_without(held_out)
        started = time.monotonic()
        deadline: float | None = None
        params = self.params
        pieces: list[str] = []
        cut = False
        unfit_text = ""  # the last try that was all echo or refusal
        avoid: list[str] = []  # how the tries that failed began: a retry begins otherwise
        messages = report.assembly.messages
        for attempt in range(EMPTY_RETRIES + 1):
            raw.clear()
            report.tries = attempt + 1
            source = tee(messages, params, deadline)
            unfit_now = ""
            try:
                cleaned = self.cleaner.stream(source)
                kept = unrecited(cleaned, recital, text, self.talk)
                for piece in unechoed(kept, text, recent):
                    pieces.append(piece)
                    yield piece
            except _OutOfTime:
                cut = True
            except _Unfit as unfit:
                unfit_text = unfit_now = unfit.text
                if unfit.kind in ("talk", "copy") and attempt + 1 == EMPTY_RETRIES:
                    # the canon led the try before the last astray ("从旅人和林小满的对话中，我们
                    # 可以推断出…", a scene's line copied): the last answers from the persona alone
                    log.info("last try without the canon: the try before talked of it or copied it")
                    messages = self._without_canon(report.line)
            finally:  # not left to the garbage collector: a cut reply holds the model till then
                source.close()
            report.raw = "".join(raw)
            if pieces or cut:
                break
            # Nothing survived clean-up (the model spoke only for others, wrote nothing, said
            # the user's line back or refused like an assistant): sample again, differently,
            # but spend at most one more reply's worth of time.
            log.info("no reply after clean-up (try %d): %r", attempt + 1, report.raw[:80])
            if deadline is None:
                deadline = time.monotonic() + max(time.monotonic() - started, RETRY_FLOOR_S)
            if time.monotonic() >= deadline:
                break
            # the same start leads to the same words however hot the sampling ("I'm Leonard."
            # three times over): a retry may not begin as a failed try did, raw or cleaned
            avoid += [t for t in (report.raw.strip(), unfit_now.strip()) if t]
            if not report.raw.strip():  # it stopped at once: it began as someone else ("丁伟:「")
                avoid += self.others
            params = retry_params(self.params, attempt + 1)
            params = replace(params, avoid=tuple(dict.fromkeys([*params.avoid, *avoid])))
        if not pieces and unfit_text:  # unfit every time: better said than nothing at all
            pieces.append(unfit_text)
            yield unfit_text
            cut = True
        if not pieces:
            self.pending = None
            seen = f": it wrote {report.raw.strip()[:60]!r}" if report.raw.strip() else ""
            raise NoReplyError(
                f"the model gave no answer as {self.character.name} after {report.tries} "
                f"tries{seen}. Say it another way, or try again"
            )
        self.record(report, "".join(pieces))  # what was shown

    def _without_canon(self, line: Turn) -> list[dict[str, str]]:
        """The messages for ``line`` after this history, with no canon: persona and rules,
        the memory's summary and pins (what every turn's prompt starts with), no recall."""
        assert self.budget is not None and self.counter is not None
        m = self.memory
        stable = MemoryView(m.summary, tuple(m.pins), (), m.folded) if m is not None else None
        return assemble(
            self.character,
            [],
            self.history,
            line,
            self.budget,
            self.counter,
            self.order,
            memory=stable,
        ).messages

    def talk(self, text: str) -> tuple[int, str] | None:
        """Where ``text`` first talks out of character, and what it says: an assistant's
        refusal, self-description or closer, or a claim to be someone else ("I'm Leonard")."""
        found = [f for f in (first_assistant_talk(text), self.wrong_self.find(text)) if f]
        return min(found) if found else None

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
        if self.memory is not None:
            self.memory.index(self.history)

    def reply(self, text: str, as_role: str | None = None, exclude: Collection[str] = ()) -> str:
        for _ in self.say(text, as_role, exclude=exclude):
            pass
        assert self.last is not None
        return self.last.reply
