"""Which classic frame to show with a reply: the picture of the canon line the reply is closest to.

The spoken canon lines that carry an image are embedded whole and clause by clause (a reply
often echoes one sentence of a long subtitle line) and compared with the reply (cosine of
normalised vectors); the best line's frame is shown when it is at least ``THRESHOLD``, tuned
by ``benchmarks/tune_scene_images.py`` on the ChatHaruhi Haruhi frames: the frames' file names
(shortened quotes of their subtitle lines) must find their frame, and Haruhi's other canon
lines must not call up any frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..character.model import Line, Scene
from .embedders import single_threaded_blas
from .hybrid import CanonIndex

THRESHOLD = 0.85  # cosine (USE embeddings); see the module docstring for how it was chosen


_SEGMENT_CJK = re.compile(r"(?<=[。！？!?；;，,…])|\s+")  # CJK subtitles use spaces as commas
_SEGMENT = re.compile(r"(?<=[.!?;,…])\s+")
MIN_CLAUSE = 4  # characters: shorter pieces say too little to call up a frame


def clauses(text: str) -> list[str]:
    """The whole line, then each segment and each pair of neighbouring segments (a reply often
    echoes part of a long subtitle line), when the line has several segments."""
    cjk = any(ord(ch) > 0x2E80 for ch in text)
    segs = [p.strip() for p in (_SEGMENT_CJK if cjk else _SEGMENT).split(text) if p and p.strip()]
    if len(segs) < 2:
        return [text]
    sep = "" if cjk else " "
    units = [*segs, *(sep.join(segs[i : i + 2]) for i in range(len(segs) - 1))]
    return list(dict.fromkeys([text, *(u for u in units if len(u) >= MIN_CLAUSE)]))


@dataclass(frozen=True)
class ImageMatch:
    image: str  # path relative to the package, e.g. "images/x.jpg"
    line: Line
    scene: Scene
    score: float


class SceneImages:
    """The image-bearing lines of a character, matched against replies."""

    def __init__(self, index: CanonIndex, threshold: float = THRESHOLD) -> None:
        self.index, self.threshold = index, threshold
        character = index.character
        self.lines: list[tuple[Line, Scene]] = [
            (ln, scene)
            for scene in character.scenes
            for ln in scene.lines
            if ln.image and not character.is_narrator(ln.speaker)
        ]
        texts: list[str] = []
        owner: list[int] = []
        for i, (ln, _) in enumerate(self.lines):
            for unit in clauses(ln.text):
                texts.append(unit)
                owner.append(i)
        self.owner = np.array(owner, dtype=np.int64)
        self.vectors = (
            index.embedder.embed_documents(texts) if texts else np.zeros((0, 1), np.float32)
        )

    def __len__(self) -> int:
        return len(self.lines)

    def scores(self, text: str) -> np.ndarray:
        """The best cosine of ``text`` with each image line (whole or one of its clauses)."""
        best = np.zeros(len(self.lines), np.float32)
        if not self.lines or not text.strip():
            return best
        query = self.index.embedder.embed_query(text)
        with single_threaded_blas():
            sims = self.vectors @ query
        np.maximum.at(best, self.owner, sims)
        return best

    def match(self, text: str) -> ImageMatch | None:
        """The frame for ``text``, or None when no image line is close enough."""
        sims = self.scores(text)
        if not len(sims):
            return None
        best = int(np.argmax(sims))
        if sims[best] < self.threshold:
            return None
        line, scene = self.lines[best]
        assert line.image is not None
        return ImageMatch(line.image, line, scene, float(sims[best]))
