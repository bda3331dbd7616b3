"""The mouth's timeline for a spoken reply, from the audio itself (issue 22's lip sync).

    timeline = mouth_timeline(audio)           # made when the WAV is made, sent with it
    timeline.to_dict()  -> {"fps": 30, "duration": 1.92, "open": [0.0, 0.41, ...],
                            "shapes": ["closed", "half", "open", ...]}

Per frame (1/``fps`` s): the RMS of the samples, gated (below ``GATE`` of the loud level, or
quieter than ``FLOOR`` absolutely, the mouth is closed: breaths and noise do not move it),
scaled by the reply's loud level (its ``LOUD`` percentile of voiced frames, so a quiet voice
opens the mouth as wide as a loud one), and smoothed as a mouth moves: it opens at once and
closes over ``RELEASE`` frames. Shapes are the sprite states: closed, half, open. Works for every
TTS backend: it reads only samples. A browser plays the audio and sets the mouth from the
frame at ``audio.currentTime``; nothing is analysed there.

For Japanese, ``with_vowels`` adds each frame's vowel (the shapes あいうえお, an avatar's
visemes): each spoken piece's morae (read by the TTS front end, ``voice.kana``) are laid over
that piece's open frames in order, evenly. ``speech_timeline`` does both for a reply spoken in
pieces (``Speaker.speak``), each piece's morae within its own stretch of the audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .base import Audio
from .kana import is_japanese, reading, vowels

FPS = 30
FLOOR = 0.01  # RMS below this is silence, however quiet the voice
GATE = 0.12  # of the loud level: quieter frames are closed
LOUD = 90  # percentile of voiced frames' RMS that opens the mouth fully
RELEASE = 0.4  # each frame the mouth keeps this much of the last frame's opening, at most
HALF, OPEN = 0.25, 0.6  # openings from which the sprite shows half and open
CARRY = 6  # frames a closing mouth keeps its last vowel after its piece ends


@dataclass(frozen=True)
class Timeline:
    fps: int
    open: tuple[float, ...]  # 0 closed .. 1 wide open, per frame
    # per frame, for Japanese: the mora's vowel (a i u e o), "n" for ん, "" where none is said
    vowels: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        return len(self.open) / self.fps

    @property
    def shapes(self) -> list[str]:
        return [shape(x) for x in self.open]

    def at(self, seconds: float) -> float:
        """The opening at a time in the audio (0 before and after it)."""
        i = int(seconds * self.fps)
        return self.open[i] if 0 <= i < len(self.open) else 0.0

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "fps": self.fps,
            "duration": round(self.duration, 3),
            "open": [round(x, 3) for x in self.open],
            "shapes": self.shapes,
        }
        if self.vowels:
            out["vowels"] = list(self.vowels)
        return out


def shape(opening: float) -> str:
    return "open" if opening >= OPEN else "half" if opening >= HALF else "closed"


def frame_rms(audio: Audio, fps: int = FPS) -> np.ndarray:
    """The RMS of each 1/``fps`` s frame of the audio (the last, partial frame included, as if
    padded with silence). Each frame's sum of squares is one dot product, summed in float64
    without copying the samples (a padded float64 copy took 2 ms for 10 s of speech; this,
    0.1 ms)."""
    step = max(1, audio.sample_rate // fps)
    samples = np.asarray(audio.samples, dtype=np.float32)
    full = len(samples) // step
    frames = samples[: full * step].reshape(full, step)
    sums = np.einsum("ij,ij->i", frames, frames, dtype=np.float64)
    tail = samples[full * step :].astype(np.float64)
    if len(tail):
        sums = np.append(sums, float(np.dot(tail, tail)))
    out: np.ndarray = np.sqrt(sums / step)
    return out


def mouth_timeline(audio: Audio, fps: int = FPS) -> Timeline:
    rms = frame_rms(audio, fps)
    if not len(rms):
        return Timeline(fps, ())
    voiced = rms[rms >= FLOOR]
    loud = float(np.percentile(voiced, LOUD)) if len(voiced) else 1.0
    level = np.clip(rms / max(loud, FLOOR), 0.0, 1.0)
    level[(rms < FLOOR) | (rms < GATE * loud)] = 0.0
    # opens at once, closes gradually: y[i] = max(x[i], RELEASE * y[i-1]), which is
    # max over j <= i of x[j] * RELEASE^(i-j): a running maximum in the log domain
    steps = np.arange(len(level)) * np.log(RELEASE)
    logs = np.log(np.maximum(level, 1e-12))
    opening = np.exp(np.maximum.accumulate(logs - steps) + steps)
    opening[opening < 0.02] = 0.0
    return Timeline(fps, tuple(opening.tolist()))


Span = tuple[float, float, str]  # start and end in seconds, and the text said there


def with_vowels(timeline: Timeline, spans: Sequence[Span]) -> Timeline:
    """The timeline with a vowel per frame, where a span's text is Japanese: its morae spread
    over the span's open frames in order (a mora per share of them); other frames get ""."""
    out = [""] * len(timeline.open)
    any_ja = False
    for start, end, text in spans:
        if not is_japanese(text):
            continue
        morae = [v for v in vowels(reading(text)) if v != ""]
        lo, hi = int(start * timeline.fps), min(len(out), int(round(end * timeline.fps)))
        voiced = [i for i in range(lo, hi) if timeline.open[i] > 0]
        if not morae or not voiced:
            continue
        any_ja = True
        for j, i in enumerate(voiced):
            out[i] = morae[j * len(morae) // len(voiced)]
    carried = 0
    for i in range(1, len(out)):  # a mouth still closing after its piece keeps its vowel
        if out[i] or not timeline.open[i]:
            carried = 0
        elif out[i - 1] and carried < CARRY:
            out[i], carried = out[i - 1], carried + 1
    return replace(timeline, vowels=tuple(out)) if any_ja else timeline


def speech_timeline(audio: Audio, pieces: Sequence[tuple[str, Audio, float]] = ()) -> Timeline:
    """The mouth's timeline of ``audio``, joined from ``pieces`` (text, its audio, the silence
    before it) as ``join_chunks`` joins them; vowels where a piece is Japanese."""
    timeline = mouth_timeline(audio)
    spans: list[Span] = []
    at = 0.0
    for text, part, gap in pieces:
        at += gap
        spans.append((at, at + part.duration, text))
        at += part.duration
    return with_vowels(timeline, spans) if spans else timeline
