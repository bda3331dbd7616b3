"""Who said each line: voice embeddings, a few labelled lines per speaker, distance bands.

Each line's audio clip becomes a speaker embedding (``resemblyzer``'s voice encoder, 256-d,
normalised). The lines the user labelled make one centroid per speaker; every other line is
compared with the centroids by cosine and put in a band:

- ``assigned``: the line is the best speaker's, either way:

  - *within her floor*: as close to her centroid as her own labelled lines come (less
    ``SLACK``, never under ``ASSIGN``) and ahead of the second speaker by ``MARGIN``;
  - *clearly hers*: at least ``SURE`` (where distinct voices stay under) and ahead of the
    second by ``CLEAR``. A floor learned from three labels is often tighter than a speaker's
    other lines (issue 14): this way carries them;

  and fewer than ``KIN`` lines that nobody claims within a floor are nearer to it than her
  centroid is: those lines with it would be a voice nobody labelled, however like hers;
- ``maybe``: the best is at least ``MAYBE`` (shown to the user, not used as canon by default):
  a line close to two speakers, below her floor without a clear lead, or with kin;
- ``unknown``: otherwise, or when the clip is too short to tell (< ``MIN_SECONDS``).

Accuracy is estimated on the labelled lines by leave-one-out: each labelled line is attributed
by centroids made without it. The bands were chosen on synthetic voices (espeak-ng), where the
same voice scores about 0.83-0.95 and different voices about 0.55-0.88 line to line; centroids
separate them far better than single lines do.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, MissingDependencyError

# Within her floor. On espeak-ng voices a speaker's lines score 0.90-0.98 with her centroid
# from three labels, and her labels 0.91-0.97 with the centroid of the other two.
ASSIGN = 0.80  # the lowest a speaker's floor goes, however spread her labels
SLACK = 0.03  # the floor: her least similar labelled line, less this (one line's noise)
MARGIN = 0.04  # ... and ahead of the second-best speaker by this much
# Clearly hers, below her floor (issue 14: with three labels per speaker, right lines at
# 0.87-0.89 fell under a floor learned from tight labels, their runner-up at 0.60-0.78).
SURE = 0.85  # above the other voices of the synthetic episode (their lines score at most 0.82
# with each other's centroids; issue 14's runner-ups 0.78) and under issue 14's right lines (0.87)
CLEAR = 0.06  # twice one speaker's spread around her centroid (about +-0.03): a lead that one
# line's noise does not make; issue 14's right lines led by 0.09 or more, a toss-up such as
# 0.86 against 0.84 leads by 0.02
KIN = 2  # this many unclaimed lines nearer to a line than her centroid: another voice's. A
# speaker's own line is nearer her centroid (an average) than to most single lines; every line
# of a voice nobody labelled has its fellows nearer (on espeak-ng voices 0.82-0.91 from the
# centroid of a similar labelled one: 4 or more of 9). One may be a stray of anybody's.
MAYBE = 0.70  # below this: unknown, a voice like no labelled one (on espeak-ng voices a
# speaker's lines score 0.90 or more with her centroid, most of another voice's under 0.80)
MIN_SECONDS = 0.4  # shorter clips carry too little voice


@dataclass(frozen=True)
class Attribution:
    line: int  # the line's key (its subtitle event index)
    speaker: str | None  # None for unknown
    band: str  # "label", "assigned", "maybe" or "unknown"
    score: float  # cosine to the chosen speaker's centroid (1.0 for a label)
    runner_up: float  # cosine to the second-best speaker


@dataclass(frozen=True)
class Report:
    attributions: dict[int, Attribution]
    accuracy: float | None  # leave-one-out on the labelled lines (None with < 2 per speaker)
    checked: int  # labelled lines that entered the estimate
    confusions: list[tuple[int, str, str]]  # (line, labelled as, attributed to) of the misses


class VoiceEmbedder:
    """resemblyzer's voice encoder on the CPU, loaded once."""

    def __init__(self) -> None:
        try:
            with warnings.catch_warnings():  # it imports pkg_resources, deprecated upstream
                warnings.simplefilter("ignore")
                from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError:
            raise MissingDependencyError(
                "speaker attribution", "resemblyzer", "ingest-voice"
            ) from None
        self._preprocess = preprocess_wav
        self._encoder = VoiceEncoder("cpu", verbose=False)

    def embed(self, clip: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """A unit vector for a clip, or None when it holds too little voice."""
        if len(clip) < MIN_SECONDS * sample_rate:
            return None
        wav = self._preprocess(clip.astype(np.float32), source_sr=sample_rate)
        if len(wav) < MIN_SECONDS * 16000:  # silence trimmed away
            return None
        vec = np.asarray(self._encoder.embed_utterance(wav), dtype=np.float32)
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else None


def _centroids(
    vectors: Mapping[int, np.ndarray], labels: Mapping[int, str], leave_out: int | None = None
) -> dict[str, np.ndarray]:
    sums: dict[str, list[np.ndarray]] = {}
    for line, speaker in labels.items():
        if line != leave_out and line in vectors:
            sums.setdefault(speaker, []).append(vectors[line])
    out = {}
    for speaker, vecs in sums.items():
        c = np.mean(vecs, axis=0)
        out[speaker] = c / (np.linalg.norm(c) or 1.0)
    return out


def _floors(vectors: Mapping[int, np.ndarray], labels: Mapping[int, str]) -> dict[str, float]:
    """Per speaker, how close a new line of theirs can be expected to come to their centroid:
    the lowest leave-one-out cosine of their labelled lines, less ``SLACK``. A voice the user did
    not label usually lands under every floor instead of on the nearest speaker."""
    floors: dict[str, float] = {}
    for line, speaker in labels.items():
        if line not in vectors:
            continue
        own = {k: s for k, s in labels.items() if s == speaker and k != line}
        rest = _centroids(vectors, own)
        if speaker in rest:
            sim = float(vectors[line] @ rest[speaker]) - SLACK
            floors[speaker] = min(floors.get(speaker, 1.0), sim)
    return {s: max(f, ASSIGN) for s, f in floors.items()}


def _nearest(vec: np.ndarray, centroids: Mapping[str, np.ndarray]) -> tuple[str, float, float]:
    """The nearest speaker, her cosine and the runner-up's (0.0 with one speaker)."""
    scored = sorted(((float(vec @ c), s) for s, c in centroids.items()), reverse=True)
    best, speaker = scored[0]
    return speaker, best, scored[1][0] if len(scored) > 1 else 0.0


def _within_floor(best: float, second: float, floor: float) -> bool:
    return best >= floor and best - second >= MARGIN


def _kin(vec: np.ndarray, best: float, line: int, strangers: Mapping[int, np.ndarray]) -> int:
    """How many lines that nobody claims are nearer ``vec`` than its speaker's centroid."""
    return sum(1 for k, v in strangers.items() if k != line and float(vec @ v) >= best)


def _attribute(
    vec: np.ndarray | None,
    centroids: Mapping[str, np.ndarray],
    line: int,
    floors: Mapping[str, float] | None = None,
    strangers: Mapping[int, np.ndarray] | None = None,
) -> Attribution:
    """One line's band (see the module's docstring). ``strangers``: the vectors of the lines
    that no speaker claims within her floor, by line."""
    if vec is None or not centroids:
        return Attribution(line, None, "unknown", 0.0, 0.0)
    speaker, best, second = _nearest(vec, centroids)
    hers = _within_floor(best, second, (floors or {}).get(speaker, ASSIGN)) or (
        best >= SURE and best - second >= CLEAR
    )
    if hers and _kin(vec, best, line, strangers or {}) < KIN:
        return Attribution(line, speaker, "assigned", best, second)
    if best >= MAYBE:
        return Attribution(line, speaker, "maybe", best, second)
    return Attribution(line, None, "unknown", best, second)


def attribute(
    vectors: Mapping[int, np.ndarray | None],
    labels: Mapping[int, str],
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Attribute every line that has a vector; labelled lines keep their label."""
    usable = {k: v for k, v in vectors.items() if v is not None}
    known = {k: s for k, s in labels.items() if k in usable}
    if len(set(known.values())) < 1:
        raise InputError(
            "no labelled line has usable audio: label a few lines per speaker first "
            "(rolecast ingest label WORKDIR)"
        )
    centroids = _centroids(usable, known)
    floors = _floors(usable, known)
    strangers: dict[int, np.ndarray] = {}  # lines that no speaker claims within her floor
    for line, vec in usable.items():
        if line not in labels:
            speaker, best, second = _nearest(vec, centroids)
            if not _within_floor(best, second, floors.get(speaker, ASSIGN)):
                strangers[line] = vec
    out: dict[int, Attribution] = {}
    for i, line in enumerate(vectors):
        if line in labels:
            out[line] = Attribution(line, labels[line], "label", 1.0, 0.0)
        else:
            out[line] = _attribute(vectors[line], centroids, line, floors, strangers)
        if progress:
            progress(i + 1, len(vectors))
    # leave-one-out on the labelled lines of speakers with at least two of them
    counts: dict[str, int] = {}
    for s in known.values():
        counts[s] = counts.get(s, 0) + 1
    checked, right, confusions = 0, 0, []
    for line, speaker in known.items():
        if counts[speaker] < 2:
            continue
        rest = {k: s for k, s in known.items() if k != line}
        guess = _attribute(
            usable[line], _centroids(usable, rest), line, _floors(usable, rest), strangers
        )
        checked += 1
        if guess.speaker == speaker and guess.band == "assigned":
            right += 1
        else:
            confusions.append((line, speaker, guess.speaker or "?"))
    return Report(out, right / checked if checked else None, checked, confusions)


def accuracy_against(
    report: Report, truth: Mapping[int, str], lines: Sequence[int]
) -> dict[str, float]:
    """For tests and benchmarks: how the attributions of ``lines`` compare with the truth."""
    n = len(lines)
    assigned = [report.attributions[k] for k in lines if report.attributions[k].band == "assigned"]
    right = sum(1 for a in assigned if a.speaker == truth[a.line])
    return {
        "lines": n,
        "assigned": len(assigned),
        "assigned_right": right,
        "precision": right / len(assigned) if assigned else 0.0,
        "accuracy": right / n if n else 0.0,  # unknown and maybe count as misses
    }
