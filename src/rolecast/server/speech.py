"""``POST /v1/audio/speech``, as OpenAI's: the TTS backends of the registry behind the API
that the official SDK (and rolecast's own ``openai`` TTS backend) speaks.

``model`` is a TTS backend (``kokoro``, ``espeak``) or a character id, which speaks with the
character's voice (as given: no translation here). Formats: ``wav`` (the default here, since
nothing encodes MP3 without extra software), ``pcm`` (24 kHz 16-bit mono, as OpenAI sends) and
``json``: the WAV in base64 with the mouth's timeline (``voice.mouth``), for a front end that
moves its own avatar's mouth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import registry
from .allowed import SHOWN
from .errors import ApiError, public

if TYPE_CHECKING:
    from .app import ServerState

MAX_INPUT = 4096  # characters, as OpenAI's endpoint
FORMATS = ("wav", "pcm", "json")  # json: the WAV (base64) with the mouth's timeline
PCM_RATE = 24000


@dataclass(frozen=True)
class SpeechRequest:
    model: str
    text: str
    voice: str | None
    speed: float
    response_format: str

    @classmethod
    def parse(cls, body: Any) -> SpeechRequest:
        def bad(message: str) -> ApiError:
            return ApiError(400, message, "invalid_request_error")

        if not isinstance(body, dict):
            raise bad("the request body must be a JSON object")
        model, text = body.get("model"), body.get("input")
        if not isinstance(model, str) or not model.strip():
            raise bad("'model' must name a TTS backend (kokoro, espeak) or a character")
        if not isinstance(text, str):
            raise bad("'input' must be the text to speak")
        if len(text) > MAX_INPUT:
            raise bad(f"'input' has {len(text)} characters; at most {MAX_INPUT}")
        voice = body.get("voice")
        if voice is not None and not isinstance(voice, str):
            raise bad("'voice' must be a string")
        speed = body.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, (int, float)):
            raise bad("'speed' must be a number")
        fmt = body.get("response_format") or "wav"
        if fmt not in FORMATS:
            raise bad(f"response_format {fmt!r} is not supported here; use one of {FORMATS}")
        return cls(model.strip(), text, voice or None, float(speed), fmt)


def _resample(samples: np.ndarray, rate: int, to: int) -> np.ndarray:
    """Linear resampling: enough for speech handed to a client that assumes 24 kHz."""
    if rate == to or not len(samples):
        return samples
    n = int(round(len(samples) * to / rate))
    resampled: np.ndarray = np.interp(
        np.arange(n) * (rate / to), np.arange(len(samples)), samples
    ).astype(np.float32)
    return resampled


def _backend_and_voice(state: ServerState, req: SpeechRequest) -> tuple[Any, str | None, float]:
    if req.model in registry.names("tts"):
        return state.tts(req.model), req.voice, req.speed
    # a character the server lets clients talk to, by id: never a path
    if req.model not in state.allowed.character_ids(state.installed()):
        shown = public(req.model if len(req.model) <= SHOWN else req.model[:SHOWN] + "…")
        raise ApiError(
            404,
            f"the model {shown!r} is neither a TTS backend ("
            f"{', '.join(registry.names('tts'))}) nor a character",
            "invalid_request_error",
            "model_not_found",
        )
    character, _ = state.character(req.model)
    from ..voice.speaker import voice_for

    chosen = voice_for(character)
    speed = req.speed if req.speed != 1.0 else chosen.speed
    return state.tts(chosen.backend), req.voice or chosen.voice or None, speed


def synthesize(state: ServerState, req: SpeechRequest) -> tuple[bytes, str]:
    """The audio bytes and their media type (runs in a worker thread)."""
    from ..voice.base import Audio
    from ..voice.wav import to_pcm16, wav_bytes

    tts, voice, speed = _backend_and_voice(state, req)
    audio = tts.synthesize(req.text, voice, speed)
    if req.response_format == "pcm":
        pcm = Audio(_resample(audio.samples, audio.sample_rate, PCM_RATE), PCM_RATE)
        return to_pcm16(pcm), "audio/pcm"
    if req.response_format == "json":  # for front ends that drive their own avatar
        import base64
        import json

        from ..voice.mouth import mouth_timeline, with_vowels

        body = {
            "format": "wav",
            "sample_rate": audio.sample_rate,
            "duration": round(audio.duration, 3),
            "audio": base64.b64encode(wav_bytes(audio)).decode("ascii"),
            # Japanese gets each frame's vowel too, for avatars with mouth shapes per vowel
            "mouth": with_vowels(
                mouth_timeline(audio), [(0.0, audio.duration, req.text)]
            ).to_dict(),
        }
        return json.dumps(body).encode("utf-8"), "application/json"
    return wav_bytes(audio), "audio/wav"
