"""What a conversation remembers beyond its history window.

    memory = Memory(embedder)
    memory.index(history)                  # after each turn: embed the turns not yet embedded
    view = memory.view(line, history)      # for the prompt: summary, pinned facts, recalled turns
    due = memory.due(history, window)      # the turns that left the window and may be folded
    memory.fold(due, summarise(llm, character, memory.summary, turns))

Three parts, each in the prompt where it costs the KV cache least:

- a **summary**, written by the backend, of the turns that left the history window, a block
  of ``FOLD_TURNS`` turns at a time (a multiple of the history's step, so the summary and
  the kept history move together). It sits after the persona and changes only when a block
  is folded in; once it outgrows ``SUMMARY_TOKENS`` its oldest pieces are condensed again;
- **pinned facts** (``/remember ...``), listed after the summary until forgotten;
- a **per-conversation index**: every turn is embedded as it is recorded, and a line that
  comes close (``RECALL_MIN`` cosine) to a turn older than the history sent recalls it, with
  the turn it answers or that answers it, beside the turn's canon.

The index holds vectors by history position; the store keeps them (``store.Store``), so
a resumed conversation, or another server, does not embed them again.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..character.model import Character, cjk_language
from ..errors import InputError
from ..overlap import is_cjk, plain, tokens
from ..prompt.assemble import HISTORY_STEP, MemoryView, Turn, template
from ..prompt.tokens import TokenCounter, truncate

log = logging.getLogger(__name__)

RECALL_K = 3  # turns a line may recall (each with its partner)
RECALL_MIN = 0.4  # cosine (USE) between the line and a turn: below, the turn is not about it
RECALL_MIN_CHARS = 4  # shorter turns ("嗯", "ok") are not recalled: they are close to anything
FOLD_TURNS = 2 * HISTORY_STEP  # turns summarised at a time
SUMMARY_TOKENS = 200  # the summary's size; beyond it the oldest pieces are condensed
PIECE_TOKENS = 80  # the size of one block's summary
MAX_PINS = 20
PIN_CHARS = 300


@dataclass
class Memory:
    """One conversation's memory: summary pieces, pinned facts, and its turns' vectors."""

    embedder: Any = None  # retrieval.embedders.Embedder, or None: nothing is recalled
    pieces: list[str] = field(default_factory=list)  # the summary, oldest first
    folded: int = 0  # the history's first turns, which the summary holds
    pins: list[str] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    fresh: list[int] = field(default_factory=list)  # turns embedded since the store saw them
    every: int = FOLD_TURNS  # turns folded into the summary at a time

    def __post_init__(self) -> None:
        if self.every <= 0 or self.every % HISTORY_STEP:
            raise InputError(f"memory folds turns in blocks of a multiple of {HISTORY_STEP}")

    @property
    def summary(self) -> str:
        return "\n".join(self.pieces)

    # ------------------------------------------------------------ the index

    def index(self, history: Sequence[Turn]) -> int:
        """Embed the turns of ``history`` not embedded yet; how many were."""
        if self.embedder is None or len(self.vectors) >= len(history):
            return 0
        start = len(self.vectors)
        new = self.embedder.embed_documents([t.text for t in history[start:]])
        self.vectors = new if not len(self.vectors) else np.concatenate([self.vectors, new])
        self.fresh.extend(range(start, len(history)))
        return len(new)

    def truncate(self, turns: int) -> None:
        """The history was cut back to ``turns`` turns (a reply regenerated, a line edited):
        the vectors of the turns gone are dropped (the summary never holds the latest turns)."""
        self.vectors = self.vectors[:turns]
        self.fresh = [i for i in self.fresh if i < turns]

    def recall(
        self, text: str, history: Sequence[Turn], before: int | None = None, k: int = RECALL_K
    ) -> list[tuple[int, float]]:
        """The turns (index, cosine) the line comes close to, best first: at most ``k``,
        each at least ``RECALL_MIN``, only turns before ``before`` (default: all indexed)."""
        n = min(len(self.vectors), len(history) if before is None else before)
        if self.embedder is None or n <= 0 or not text.strip():
            return []
        sims = self.vectors[:n] @ self.embedder.embed_query(text)
        order = np.argsort(-sims, kind="stable")
        found: list[tuple[int, float]] = []
        for i in order:
            if sims[i] < RECALL_MIN or len(found) == k:
                break
            if len(plain(history[i].text)) >= RECALL_MIN_CHARS:
                found.append((int(i), float(sims[i])))
        return found

    def view(self, text: str, history: Sequence[Turn], character: Character) -> MemoryView:
        """What the prompt gets for this line: the summary, the pins, and the recalled turns
        (each with its partner: the reply to a line of someone else's, the line a reply of
        the character's answers), best first. Assembly leaves out those in the window."""
        recalled: list[tuple[int, Turn]] = []
        seen: set[int] = set()
        for i, _ in self.recall(text, history):
            mine = character.is_self(history[i].speaker)
            partner = i - 1 if mine else i + 1
            for j in (i, partner):
                if 0 <= j < len(history) and j not in seen:
                    seen.add(j)
                    recalled.append((j, history[j]))
        return MemoryView(self.summary, tuple(self.pins), tuple(recalled), self.folded)

    # ------------------------------------------------------------ the summary

    def due(self, history: Sequence[Turn], window: int) -> tuple[int, int] | None:
        """The next block of turns to fold into the summary, as (start, end) history
        indexes, once ``every`` turns before ``window`` (the first turn sent as history)
        are not in the summary yet; else None."""
        end = self.folded + self.every
        return (self.folded, end) if end <= min(window, len(history)) else None

    def fold(self, span: tuple[int, int], piece: str) -> None:
        """The turns of ``span`` are now in the summary, as ``piece``."""
        if span[0] != self.folded:
            raise ValueError(f"fold {span} does not start where the summary ends ({self.folded})")
        if piece.strip():
            self.pieces.append(piece.strip())
        self.folded = span[1]

    def condense_due(self, counter: TokenCounter) -> bool:
        """Whether the summary has outgrown ``SUMMARY_TOKENS``."""
        return len(self.pieces) > 1 and counter.count(self.summary) > SUMMARY_TOKENS

    def condensed(self, piece: str) -> None:
        """All pieces but the newest are now ``piece``."""
        self.pieces = [p for p in (piece.strip(), self.pieces[-1]) if p]

    # ------------------------------------------------------------ pinned facts

    def pin(self, text: str) -> int:
        """Pin a fact; its number (1-based), as ``/memories`` lists it."""
        fact = " ".join(text.split())
        if not fact:
            raise InputError("/remember needs something to remember: /remember 我怕黑")
        if len(fact) > PIN_CHARS:
            raise InputError(f"a pinned fact is at most {PIN_CHARS} characters ({len(fact)} given)")
        if len(self.pins) >= MAX_PINS:
            raise InputError(f"{MAX_PINS} facts are pinned already: /forget one first")
        if fact not in self.pins:
            self.pins.append(fact)
        return self.pins.index(fact) + 1

    def forget(self, what: str) -> str:
        """Forget pinned fact number ``what`` (as listed), or "summary": the summary; what
        was forgotten."""
        what = what.strip()
        if what in ("summary", "梗概", "总结"):
            gone, self.pieces = self.summary, []
            return gone
        if not what.isdigit() or not 1 <= int(what) <= len(self.pins):
            listed = f"1-{len(self.pins)}" if self.pins else "none is pinned"
            raise InputError(f"no pinned fact {what!r}: /forget N, N from /memories ({listed})")
        return self.pins.pop(int(what) - 1)

    def listing(self) -> str:
        """The memory as ``/memories`` shows it."""
        out = [f"summary of the first {self.folded} turns:" if self.folded else "no summary yet"]
        out += [f"  {p}" for p in self.pieces]
        out.append("pinned:" if self.pins else "nothing pinned (/remember FACT pins one)")
        out += [f"  {i}. {p}" for i, p in enumerate(self.pins, 1)]
        out.append(f"{len(self.vectors)} turns indexed for recall")
        return "\n".join(out)

    # ------------------------------------------------------------ saving

    def state(self) -> dict[str, Any]:
        """Summary, folded turns and pins as JSON-able data (the vectors are kept apart)."""
        return {"pieces": list(self.pieces), "folded": self.folded, "pins": list(self.pins)}

    def restore(self, state: dict[str, Any]) -> None:
        try:
            pieces = [str(p) for p in state.get("pieces", [])]
            folded = int(state.get("folded", 0))
            pins = [str(p) for p in state.get("pins", [])]
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"the saved memory is not readable: {exc}") from None
        if folded < 0 or folded % HISTORY_STEP:
            raise InputError(
                f"the saved memory folds {folded} turns: not a multiple of {HISTORY_STEP}"
            )
        self.pieces, self.folded, self.pins = pieces, folded, pins

    def dumps(self) -> str:
        return json.dumps(self.state(), ensure_ascii=False)


def transcript(turns: Sequence[Turn], character: Character) -> str:
    """Turns as the summariser reads them: "Name：line" (": " in English), one a line."""
    colon = "：" if cjk_language(character.language) else ": "
    return "\n".join(f"{t.speaker}{colon}{t.text}" for t in turns)


_LABEL = re.compile(r"^\s*(?:记忆|梗概|总结|摘要|memory|summary)\s*[:：]\s*", re.I)


def summary_messages(character: Character, text: str, limit_tokens: int) -> list[dict[str, str]]:
    """The messages that ask a backend to condense ``text`` (a transcript, or older summary
    pieces) to about ``limit_tokens``: the instruction, one worked example (a small model
    copies the transcript back without one), then the text."""
    cjk = cjk_language(character.language)
    limit = limit_tokens * 2 if cjk else int(limit_tokens * 0.7)
    filled = template("summarise", character.language).substitute(limit=limit)
    system, example, answer = (part.strip() for part in filled.split("\n===\n"))
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": example},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": text},
    ]


_LABEL = re.compile(r"^\s*(?:记忆|梗概|总结|摘要|memory|summary)\s*[:：]\s*", re.I)
_CLAUSE = re.compile(r"(?<=[；;。！？!?])")
GROUNDED = 0.6  # a clause of the summary keeps at least this share of its words in the source


def grounded(summary: str, source: str) -> str:
    """The clauses of ``summary`` whose words are mostly the source's: a small model's
    summary also says what its example said, or nothing that was said at all."""
    said = set(tokens(source))
    kept = []
    for clause in _CLAUSE.split(summary):
        words = [w for w in tokens(clause) if w not in _FILLER]
        if clause.strip() and (not words or sum(w in said for w in words) >= GROUNDED * len(words)):
            kept.append(clause.strip())
    return "".join(kept) if is_cjk(summary) else " ".join(kept)


# words a summary adds that are not the conversation's own ("he said that...")
_FILLER = frozenset("说问道他她它们的了是和在也就都又还要") | {
    "said",
    "says",
    "asked",
    "told",
    "that",
    "the",
    "a",
    "and",
    "he",
    "she",
    "they",
    "to",
}


def clean_summary(raw: str, counter: TokenCounter, limit_tokens: int, source: str = "") -> str:
    """The summary the backend wrote, as kept: its first paragraph, without a label such as
    "Summary:", only the clauses grounded in ``source`` (when given), cut to
    ``limit_tokens`` at a sentence end where there is one."""
    text = next((p.strip() for p in raw.strip().split("\n\n") if p.strip()), "")
    text = _LABEL.sub("", " ".join(text.split()))
    if source:
        text = grounded(text, source)
    if counter.count(text) > limit_tokens:
        text = truncate(counter, text, limit_tokens)
        end = max(text.rfind(ch) for ch in "。！？.!?；;")
        if end > len(text) // 2:
            text = text[: end + 1]
    return text
