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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Audio

FPS = 30
FLOOR = 0.01  # RMS below this is silence, however quiet the voice
GATE = 0.12  # of the loud level: quieter frames are closed
LOUD = 90  # percentile of voiced frames' RMS that opens the mouth fully
RELEASE = 0.4  # each frame the mouth keeps this much of the last frame's opening, at most
HALF, OPEN = 0.25, 0.6  # openings from which the sprite shows half and open


@dataclass(frozen=True)
class Timeline:
    fps: int
    open: tuple[float, ...]  # 0 closed .. 1 wide open, per frame

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
        return {
            "fps": self.fps,
            "duration": round(self.duration, 3),
            "open": [round(x, 3) for x in self.open],
            "shapes": self.shapes,
        }


def shape(opening: float) -> str:
    return "open" if opening >= OPEN else "half" if opening >= HALF else "closed"


def frame_rms(audio: Audio, fps: int = FPS) -> np.ndarray:
    """The RMS of each 1/``fps`` s frame of the audio (the last, partial frame included)."""
    step = max(1, audio.sample_rate // fps)
    samples = audio.samples.astype(np.float64)
    n = -(-len(samples) // step)
    padded = np.zeros(n * step)
    padded[: len(samples)] = samples
    out: np.ndarray = np.sqrt(np.mean(np.square(padded.reshape(n, step)), axis=1))
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
