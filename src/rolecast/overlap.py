"""Runs of words one text shares with another: how a reply that recites its prompt or
copies its canon is found (by the conversation gate) and cut short (by the session).

Tokens are CJK characters one by one and words elsewhere, case-folded, punctuation left
out, each with its place in the text, so a run found in tokens can be cut in the text.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass

_CJK = "\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
_IS_CJK = re.compile(f"[{_CJK}]")
EVIDENCE_CHARS = 60  # of a run quoted as evidence

Gram = tuple[str, ...]


def is_cjk(text: str) -> bool:
    return bool(_IS_CJK.match(text))


def cjk_count(text: str) -> int:
    return len(_IS_CJK.findall(text))


def tokens(text: str) -> list[str]:
    """CJK characters one by one, words elsewhere; case-folded, punctuation dropped."""
    return [t for t, _, _ in spans(text)]


def plain(text: str) -> str:
    """The text as its tokens run together: what is compared for repeats."""
    return "".join(tokens(text))


def similarity(a: str, b: str) -> float:
    """How alike two plain texts are (difflib's ratio, 1.0 for the same)."""
    return 1.0 if a == b else difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def spans(text: str) -> list[tuple[str, int, int]]:
    """Each token of ``text`` with its start and end in ``text``."""
    out = []
    for m in _TOKEN.finditer(text):
        tok = unicodedata.normalize("NFKC", m[0]).casefold()
        out.append((tok, m.start(), m.end()))
    return out


def grams(toks: Sequence[str], n: int) -> set[Gram]:
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def grams_of(texts: Iterable[str], n: int) -> set[Gram]:
    out: set[Gram] = set()
    for t in texts:
        out |= grams(tokens(t), n)
    return out


def join(run: Sequence[str]) -> str:
    """Tokens back to text: CJK characters run together, words apart; long runs cut."""
    out = ""
    for tok in run:
        if out and not (is_cjk(tok) or is_cjk(out[-1])):
            out += " "
        out += tok
    return out if len(out) <= EVIDENCE_CHARS else out[:EVIDENCE_CHARS] + "…"


@dataclass(frozen=True)
class Run:
    start: int  # first token
    end: int  # one past the last token
    text: str  # the run, joined


def shared_run(
    toks: Sequence[str],
    source: Set[Gram],
    n: int,
    allowed: Set[Gram] = frozenset(),
) -> Run | None:
    """The first run of ``n`` or more tokens whose every ``n``-gram is in ``source``, of
    which at least half of ``n`` tokens lie outside every ``allowed`` n-gram (what the canon
    or the user's line also says, which the reply may say too)."""
    i = 0
    while i <= len(toks) - n:
        if tuple(toks[i : i + n]) not in source:
            i += 1
            continue
        end = i + n
        while end < len(toks) and tuple(toks[end - n + 1 : end + 1]) in source:
            end += 1
        run = toks[i:end]
        covered = [False] * len(run)
        for k in range(len(run) - n + 1):
            if tuple(run[k : k + n]) in allowed:
                covered[k : k + n] = [True] * n
        if covered.count(False) >= (n + 1) // 2:  # mostly its own, not what may be said
            return Run(i, end, join(run))
        i = end - n + 1
    return None
