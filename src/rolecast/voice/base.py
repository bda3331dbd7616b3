"""The TTS contract: text in, mono float32 samples out.

A backend implements ``_synthesize(text, voice, speed)``; :meth:`TTS.synthesize` checks the
input first (empty text, nothing speakable, an unknown voice, a speed out of range) so every
backend fails the same clear way. Backends are found by name through the registry
(kind ``"tts"``); each imports its heavy library inside its own module, when it is made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError, UnknownNameError
from .text import has_speakable, pause_after

MIN_SPEED, MAX_SPEED = 0.25, 4.0  # the range OpenAI's speech API takes; kokoro and espeak too


@dataclass(frozen=True)
class Audio:
    """Mono audio: float32 samples in [-1, 1] at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples, dtype=np.float32).reshape(-1)
        object.__setattr__(self, "samples", samples)
        if self.sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {self.sample_rate}")

    @property
    def duration(self) -> float:
        """Seconds."""
        return len(self.samples) / self.sample_rate

    def rms(self) -> float:
        """Root mean square of the samples (0.0 for no samples): silence is near 0."""
        if not len(self.samples):
            return 0.0
        return float(np.sqrt(np.mean(np.square(self.samples, dtype=np.float64))))

    @classmethod
    def silence(cls, seconds: float, sample_rate: int) -> Audio:
        return cls(np.zeros(int(round(seconds * sample_rate)), np.float32), sample_rate)


def check_speed(speed: float) -> float:
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise InputError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed}")
    return speed


class TTS:
    """A text-to-speech backend. Capabilities are class attributes; ``sample_rate`` and
    ``default_voice`` may be set per instance where they depend on options."""

    name: ClassVar[str] = "base"
    sample_rate: int = 24000
    default_voice: str = ""
    # languages its voices speak; empty means "whatever the voice is given" (a remote model)
    languages: tuple[str, ...] = ()
    thread_safe: ClassVar[bool] = False

    def __init__(self) -> None:
        self._lock = threading.Lock()

    # --- what a backend provides

    def voices(self) -> list[str] | None:
        """The voice names this backend knows, or ``None`` where the far end decides."""
        return None

    def language_of(self, voice: str | None = None) -> str | None:
        """The language a voice speaks (ja, zh, en, ...), or ``None`` for any language."""
        return self.languages[0] if len(self.languages) == 1 else None

    def _synthesize(self, text: str, voice: str, speed: float) -> Audio:
        raise NotImplementedError

    def warm_up(self) -> None:
        """Load what the first synthesis would otherwise wait for."""

    def close(self) -> None:
        """Release resources (models, connections)."""

    # --- the checked entry point

    def check_voice(self, voice: str | None) -> str:
        """``voice`` (or the default) if this backend has it; an error naming the known ones."""
        chosen = voice or self.default_voice
        known = self.voices()
        if known is not None and chosen not in known:
            raise UnknownNameError(f"{self.name} voice", chosen, known)
        return chosen

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> Audio:
        """Speak ``text`` with ``voice`` (default: the backend's) at ``speed`` (1.0 = normal)."""
        if not text or not text.strip():
            raise InputError("empty text: there is nothing to speak")
        if not has_speakable(text):
            raise InputError(f"nothing speakable in {text.strip()[:40]!r}: no letters or digits")
        check_speed(speed)
        chosen = self.check_voice(voice)
        if self.thread_safe:
            return self._synthesize(text.strip(), chosen, speed)
        with self._lock:
            return self._synthesize(text.strip(), chosen, speed)


@dataclass(frozen=True)
class Chunk:
    """One piece of speech as it is made: its text, its audio, the silence to put before it
    (none for the first; longer after a sentence than after a clause), and when it was ready
    (seconds since the synthesis of the whole began)."""

    index: int
    text: str
    audio: Audio
    gap_s: float
    ready_s: float


def synthesize_chunks(
    tts: TTS,
    pieces: Iterable[str],
    voice: str | None = None,
    speed: float = 1.0,
    started: float | None = None,
) -> Iterator[Chunk]:
    """Speak ``pieces`` one after another, yielding each as soon as it is ready, so that
    playback can start on the first while the rest are made. A piece that comes out as no
    sound at all (only punctuation to the model) is left out."""
    t0 = time.perf_counter() if started is None else started
    previous: str | None = None
    index = 0
    for piece in pieces:
        audio = tts.synthesize(piece, voice, speed)
        if not len(audio.samples):
            continue
        gap = 0.0 if previous is None else pause_after(previous)
        yield Chunk(index, piece, audio, gap, time.perf_counter() - t0)
        previous, index = piece, index + 1


def join_chunks(chunks: Iterable[Chunk]) -> Audio:
    """The chunks as one audio, each after its gap of silence."""
    parts: list[np.ndarray] = []
    rate = 0
    for chunk in chunks:
        rate = rate or chunk.audio.sample_rate
        if chunk.audio.sample_rate != rate:
            raise ValueError("chunks of different sample rates cannot be joined")
        if chunk.gap_s:
            parts.append(np.zeros(int(round(chunk.gap_s * rate)), np.float32))
        parts.append(chunk.audio.samples)
    if not parts:
        raise ValueError("no chunks to join")
    return Audio(np.concatenate(parts), rate)


def tts_settings(
    name: str,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    environ: Mapping[str, str] | None = None,
    file: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings of TTS backend ``name``, worked out here once (argument > environment >
    config file > default) so that backends read no config: the openai one takes
    ``tts_base_url`` (else ``base_url``), ``tts_api_key`` (else ``api_key``), ``tts_model`` and
    ``timeout``; the others take a model when one is given."""
    from .. import config

    if name not in ("openai", "openai-compatible"):
        return {"model": model} if model else {}
    data = config.read_file(environ) if file is None else file

    def setting(key: str, explicit: str | None = None) -> str | None:
        return config.resolve(key, explicit, environ, data)

    found = {
        "model": setting("tts_model", model),
        "base_url": setting("tts_base_url", base_url) or setting("base_url"),
        "api_key": setting("tts_api_key", api_key) or setting("api_key"),
        "timeout": float(setting("timeout") or 60),
    }
    return {k: v for k, v in found.items() if v is not None}


def get_tts(name: str, **options: Any) -> TTS:
    """The TTS backend registered as ``name``; an unknown name lists the known ones."""
    from .. import registry

    try:
        factory = registry.resolve("tts", name)
    except UnknownNameError:
        raise UnknownNameError("TTS backend", name, registry.names("tts")) from None
    tts: TTS = factory(**options)
    return tts
