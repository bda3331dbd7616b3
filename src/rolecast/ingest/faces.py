"""Prefer frames with a face in them: of a few frames taken across a line, keep the one where
a face detector sees the largest, surest face; the midpoint when none shows one.

The detector is any function from an image file to a score (0 when no face is seen), so the
choice is tested without a model; :func:`animeface_detector` is the real one (extra
``ingest-faces``: the ``animeface`` package, a detector for faces drawn in anime style).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import InputError

Detector = Callable[[Path], float]
# where in a line's span the candidate frames are taken; the middle one is kept on a tie
FRACTIONS = (0.2, 0.5, 0.8)


def candidate_times(
    start: float, end: float, fractions: Sequence[float] = FRACTIONS
) -> list[float]:
    """Times (seconds, on a millisecond grid) across ``start``-``end`` to look for a face."""
    return [round(start + (end - start) * f, 3) for f in fractions]


def choose(candidates: Sequence[Path], detector: Detector) -> tuple[int, float]:
    """The index of the candidate to keep and its face score: the best score above zero, the
    middle candidate when no candidate shows a face (or on a tie with it)."""
    if not candidates:
        raise ValueError("no candidate frames")
    middle = len(candidates) // 2
    scores = [detector(p) for p in candidates]
    best = max(range(len(scores)), key=lambda i: (scores[i], i == middle))
    if scores[best] <= 0:
        return middle, 0.0
    return best, scores[best]


def animeface_detector(min_likelihood: float = 0.5) -> Detector:
    """A detector backed by ``animeface``: the largest face's share of the picture times its
    likelihood, faces below ``min_likelihood`` ignored."""
    try:
        import animeface
        from PIL import Image
    except ImportError:
        raise InputError(
            "preferring frames with faces needs animeface: pip install 'rolecast[ingest-faces]'"
        ) from None

    def score(path: Path) -> float:
        with Image.open(path) as opened:
            im = opened.convert("RGB")
            area = im.width * im.height
            with warnings.catch_warnings():  # animeface reads pixels with a deprecated call
                warnings.simplefilter("ignore", DeprecationWarning)
                faces = animeface.detect(im)
        best = 0.0
        for f in faces:
            if f.likelihood < min_likelihood:
                continue
            box = f.face.pos
            best = max(best, box.width * box.height / area * f.likelihood)
        return best

    return score
