"""Lines that people in the character's world say to it, written by a backend from canon
examples (the method behind ChatHaruhi's 54K dialogues, written anew): the prompt, reading
the backend's answer, and keeping only new lines.

    question_messages(character, examples, n)   the request: canon pairs as examples, rules
    followup_messages(character, who, dialogue) the next line of one who talks on
    parse_lines(text, character)                the backend's lines, without the character's own
    Keeper(embedder, character).keep(lines)      new lines only; drops counted by reason
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ..character.model import Character, cjk_language
from ..eval.canon import HeldOut, candidate_turns
from ..eval.metrics import normalise
from ..prompt.assemble import template

if TYPE_CHECKING:
    import numpy as np

    from ..retrieval.embedders import Embedder

EXAMPLES = 4  # canon pairs shown in each request
PER_REQUEST = 10  # lines asked for in each request
MAX_CHARS = 120  # a longer "line" is a speech, not something said in passing
# a line this close to one kept already says the same thing: the cosine where a pair is as
# likely the same question as not, read off 140 pairs of ChatHaruhi's generated lines (Haruhi
# and Wei Xiaobao in Chinese, Harry in English) with the USE embedder
# (benchmarks/tune_duplicates.py). The same question, of the pairs read, in 0.75-0.80: 6/30;
# 0.80-0.85: 13/30; 0.85-0.90: 19/30; 0.90-0.95: 25/28; above 0.95: 19/22.
DUPLICATE_COSINE = 0.85


@dataclass(frozen=True)
class Asked:
    """A line someone says to the character: who (as the backend wrote it) and what."""

    speaker: str
    text: str


def example_pairs(
    character: Character,
    k: int = EXAMPLES,
    rng: random.Random | None = None,
    held_out: frozenset[str] = frozenset(),
    turns: Sequence[HeldOut] | None = None,
) -> list[tuple[str, str, str]]:
    """``k`` random (speaker, what they said, the character's answer) from the canon,
    none from a ``held_out`` scene. ``turns``: the character's ``candidate_turns``, when the
    caller has them (a run asks for examples thousands of times)."""
    if turns is None:
        turns = candidate_turns(character)
    turns = [t for t in turns if t.scene_id not in held_out]
    chosen = (rng or random.Random(0)).sample(turns, min(k, len(turns)))
    return [(t.line.speaker, t.line.text, t.target) for t in chosen]


def question_messages(
    character: Character, examples: list[tuple[str, str, str]], n: int = PER_REQUEST
) -> list[dict[str, str]]:
    """The request for ``n`` lines, with ``examples`` from ``example_pairs``."""
    zh = cjk_language(character.language)
    if zh:
        shown = "\n\n".join(f"{s}:「{a}」\n{character.name}:「{b}」" for s, a, b in examples)
        work = character.source or "原作"
    else:
        shown = "\n\n".join(f'{s}: "{a}"\n{character.name}: "{b}"' for s, a, b in examples)
        work = character.source or "the original story"
    text = template("questions", character.language).substitute(
        name=character.name, work=work, examples=shown, n=n
    )
    return [{"role": "user", "content": text}]


def followup_messages(
    character: Character, speaker: str, dialogue: Sequence[tuple[str, str]]
) -> list[dict[str, str]]:
    """The request for ``speaker``'s next line in ``dialogue`` ((who, what) in order)."""
    zh = cjk_language(character.language)
    if zh:
        shown = "\n".join(f"{who}:「{what}」" for who, what in dialogue)
        work = character.source or "原作"
    else:
        shown = "\n".join(f'{who}: "{what}"' for who, what in dialogue)
        work = character.source or "the original story"
    text = template("followup", character.language).substitute(
        name=character.name, speaker=speaker, work=work, dialogue=shown
    )
    return [{"role": "user", "content": text}]


def next_line(text: str, character: Character, speaker: str) -> str:
    """The speaker's next line in the backend's answer to ``followup_messages`` ("" when
    there is none: the backend wrote the character's line, or nothing usable)."""
    found = parse_lines(text, character)
    return found[0].text if found else ""


_NUMBER = re.compile(r"^\s*(?:[-*•·]|\(?\d{1,3}[.)、:：）]|[（(]\d{1,3}[)）])\s*")
_SPOKEN = re.compile(r"^\s*([^:：「」\"“”\n]{1,30}?)\s*[:：]\s*(.+)$")
_QUOTES = "「」『』\"“”'‘’ "


# what a small model copies from the request's format instead of a name
PLACEHOLDERS = frozenset({"说话人", "名字", "某人", "speaker", "name", "someone"})


def parse_lines(text: str, character: Character) -> list[Asked]:
    """The lines in the backend's answer, numbering and quotes taken off; lines that the
    character itself speaks, empty ones and over-long ones are left out. A placeholder for a
    name copied from the request ("说话人:林小满：「…」") is looked through."""
    selves = {character.name, *character.aliases}
    out = []
    for raw in text.splitlines():
        line = _NUMBER.sub("", raw).strip()
        speaker = ""
        for _ in range(3):  # "说话人:" before the real name, at most twice
            m = _SPOKEN.match(line)
            if not m:
                break
            speaker, line = m.group(1).strip(_QUOTES + "*"), m.group(2)
            if speaker.casefold() not in PLACEHOLDERS:
                break
        if speaker.casefold() in PLACEHOLDERS:
            speaker = ""
        said = line.strip().strip(_QUOTES).strip()
        if not said or len(said) > MAX_CHARS or any(n in speaker for n in selves if n):
            continue  # "周伯（林小满）", "林小满回答": the character's own line, or a muddle
        out.append(Asked(speaker or character.user_role, said))
    return out


@dataclass
class Keeper:
    """Keeps new lines only: not the same as one kept already (after normalising, or by
    embedding cosine >= ``threshold``), and not a line of the canon itself."""

    embedder: Embedder
    character: Character
    threshold: float = DUPLICATE_COSINE
    kept: list[Asked] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    _seen: set[str] = field(default_factory=set)
    _matrix: np.ndarray | None = None  # the kept lines' vectors, rows [0, len(kept))
    _canon: set[str] = field(default_factory=set)
    expected: int = 0  # lines that will be kept (room is made for them at once)
    CHUNK: ClassVar[int] = 256  # new lines checked together

    def __post_init__(self) -> None:
        self._canon = {
            normalise(ln.text) for s in self.character.scenes for ln in s.lines if ln.text.strip()
        }

    def copies_canon(self, text: str) -> bool:
        return normalise(text) in self._canon

    @property
    def vectors(self) -> np.ndarray:
        """The kept lines' normalised document vectors, one row each, in ``kept`` order."""
        import numpy as np

        if self._matrix is None:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return self._matrix[: len(self.kept)]

    def _keep_new(self, fresh: list[Asked]) -> list[Asked]:
        """Of lines none of which is a known text, those not near one kept (nor near an
        earlier one of them that is kept). The kept lines' matrix is read once for all of
        them: at tens of thousands of lines, reading it is what a check costs."""
        import numpy as np

        vectors = self.embedder.embed_documents([a.text for a in fresh], workers=1)
        before = len(self.kept)
        near = (
            np.max(self._matrix[:before] @ vectors.T, axis=0)
            if self._matrix is not None and before
            else np.zeros(len(fresh), dtype=np.float32)
        )
        among = vectors @ vectors.T  # these lines against each other
        taken: list[int] = []  # of these, the ones kept
        for j, a in enumerate(fresh):
            if float(near[j]) >= self.threshold or (
                taken and float(np.max(among[j, taken])) >= self.threshold
            ):
                self.dropped["near duplicate"] += 1
                continue
            n = len(self.kept)
            if self._matrix is None or n == len(self._matrix):  # the expected size, then 1.5x
                size = max(64, self.expected + self.CHUNK, n + n // 2)
                grown = np.zeros((size, vectors.shape[1]), dtype=np.float32)
                if self._matrix is not None:
                    grown[:n] = self._matrix
                self._matrix = grown
            self._matrix[n] = vectors[j]
            self.kept.append(a)
            taken.append(j)
        return [fresh[j] for j in taken]

    def keep(self, lines: list[Asked]) -> list[Asked]:
        """The lines of ``lines`` worth keeping (they are kept from now on)."""
        fresh = []
        for a in lines:
            key = normalise(a.text)
            if key in self._canon:
                self.dropped["copies canon"] += 1
            elif key in self._seen:
                self.dropped["duplicate"] += 1
            else:
                self._seen.add(key)
                fresh.append(a)
        if not fresh:
            return []
        out: list[Asked] = []
        for start in range(0, len(fresh), self.CHUNK):
            out += self._keep_new(fresh[start : start + self.CHUNK])
        return out
