"""Which classic frame to show with a reply: the picture of the canon line the reply is closest to.

Every spoken canon line is already embedded in the index; the lines that carry an image are
compared with the reply (cosine of normalised vectors) and the best one is shown when it is at
least ``THRESHOLD``. The threshold is tuned by ``benchmarks/tune_scene_images.py`` on the
ChatHaruhi Haruhi frames: the full subtitle lines of ``text_image_dict.txt`` must find their
frame, and Haruhi's other canon lines must not call up any frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..character.model import Line, Scene
from .embedders import single_threaded_blas
from .hybrid import CanonIndex

THRESHOLD = 0.75  # cosine (USE embeddings); see the module docstring for how it was chosen


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
        units: list[int] = []
        self.lines: list[tuple[Line, Scene]] = []
        unit = 0
        for scene in character.scenes:  # the same walk as hybrid.dense_units
            spoken = [ln for ln in scene.lines if not character.is_narrator(ln.speaker)]
            if not spoken:
                unit += 1
                continue
            for ln in spoken:
                if ln.image:
                    units.append(unit)
                    self.lines.append((ln, scene))
                unit += 1
        self.vectors = index.vectors[units] if units else np.zeros((0, 1), np.float32)

    def __len__(self) -> int:
        return len(self.lines)

    def scores(self, text: str) -> np.ndarray:
        if not self.lines or not text.strip():
            return np.zeros(len(self.lines), np.float32)
        query = self.index.embedder.embed_query(text)
        with single_threaded_blas():
            return self.vectors @ query

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
