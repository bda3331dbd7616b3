"""Who said each line: voice embeddings, a few labelled lines per speaker, distance bands.

Each line's audio clip becomes a speaker embedding (``resemblyzer``'s voice encoder, 256-d,
normalised). The lines the user labelled make one centroid per speaker; every other line is
compared with the centroids by cosine and put in a band:

- ``assigned``: the best speaker is at least ``ASSIGN`` and as close as that speaker's own
  labelled lines come to their centroid (less ``SLACK``), and ahead of the second by ``MARGIN``;
- ``maybe``: the best is at least ``MAYBE`` (shown to the user, not used as canon by default);
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

ASSIGN = 0.80  # cosine to the best centroid for a firm attribution
MARGIN = 0.04  # ... and ahead of the second-best speaker by this much
MAYBE = 0.70  # below this: unknown
MIN_SECONDS = 0.4  # shorter clips carry too little voice
SLACK = 0.03  # below the least similar labelled line of a speaker that still counts as theirs


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


def _attribute(
    vec: np.ndarray | None,
    centroids: Mapping[str, np.ndarray],
    line: int,
    floors: Mapping[str, float] | None = None,
) -> Attribution:
    if vec is None or not centroids:
        return Attribution(line, None, "unknown", 0.0, 0.0)
    scored = sorted(((float(vec @ c), s) for s, c in centroids.items()), reverse=True)
    best, speaker = scored[0]
    second = scored[1][0] if len(scored) > 1 else 0.0
    floor = (floors or {}).get(speaker, ASSIGN)
    if best >= floor and best - second >= MARGIN:
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
    out: dict[int, Attribution] = {}
    for i, line in enumerate(vectors):
        if line in labels:
            out[line] = Attribution(line, labels[line], "label", 1.0, 0.0)
        else:
            out[line] = _attribute(vectors[line], centroids, line, floors)
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
        guess = _attribute(usable[line], _centroids(usable, rest), line, _floors(usable, rest))
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
