"""Any OpenAI-compatible ``/v1/audio/speech`` endpoint (OpenAI, a local speech server,
``rolecast serve`` itself) through the official ``openai`` SDK.

Settings follow the LLM backend's (``backends/openai_compat.py``): explicit option >
environment > config file > default. The endpoint is ``tts_base_url``
(``$ROLECAST_TTS_BASE_URL``), else the LLM's ``base_url`` (``$ROLECAST_BASE_URL``,
``$OPENAI_BASE_URL``), else api.openai.com; the key likewise (``tts_api_key``, then
``api_key``); the model is ``tts_model`` (``$ROLECAST_TTS_MODEL``, default ``tts-1``).
Audio is asked for as ``wav`` (or raw ``pcm``, 24 kHz 16-bit mono as OpenAI sends it).
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError, MissingDependencyError, UnknownNameError, VoiceError
from .base import TTS, Audio
from .wav import from_pcm16, parse_wav

OPENAI_URL = "https://api.openai.com/v1"
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)
PCM_RATE = 24000  # OpenAI's "pcm": 24 kHz, 16-bit signed little-endian, mono
FORMATS = ("wav", "pcm")


class OpenAITTS(TTS):
    name = "openai"
    thread_safe = True  # one HTTP client, one request per call
    sample_rate = PCM_RATE
    default_voice = "alloy"

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        response_format: str = "wav",
        voices: list[str] | None = None,
        default_voice: str | None = None,
        client: Any = None,
    ) -> None:
        super().__init__()
        try:
            import openai
        except ImportError:
            raise MissingDependencyError("the openai TTS backend", "openai", "openai") from None
        if response_format not in FORMATS:
            raise InputError(
                f"response format {response_format!r} is not supported; use one of {FORMATS}"
            )
        self._openai = openai
        self.base_url = base_url or OPENAI_URL
        key = api_key
        if not key:
            if self.base_url == OPENAI_URL:
                raise VoiceError(
                    "the openai TTS backend needs an API key for api.openai.com: set "
                    "ROLECAST_TTS_API_KEY (or ROLECAST_API_KEY, OPENAI_API_KEY), pass "
                    "--tts-api-key, or set ROLECAST_TTS_BASE_URL for a local speech server"
                )
            key = "no-key"  # local servers take any key
        self.model = model or "tts-1"
        self.response_format = response_format
        # OpenAI's voices are known; another server's are its own business (it says so)
        self._voices = list(voices) if voices is not None else None
        if voices is None and self.base_url == OPENAI_URL:
            self._voices = list(OPENAI_VOICES)
        if default_voice:
            self.default_voice = default_voice
        seconds = float(timeout if timeout is not None else 60)
        self._client = client or openai.OpenAI(
            base_url=self.base_url, api_key=key, timeout=seconds, max_retries=2
        )

    def voices(self) -> list[str] | None:
        return None if self._voices is None else list(self._voices)

    def _synthesize(self, text: str, voice: str, speed: float) -> Audio:
        oa = self._openai
        try:
            response = self._client.audio.speech.create(
                model=self.model,
                voice=voice,
                input=text,
                response_format=self.response_format,  # type: ignore[arg-type]
                speed=speed,
            )
            data = response.read()
        except oa.AuthenticationError as exc:
            raise VoiceError(
                f"{self.base_url} refused the API key (401): check ROLECAST_TTS_API_KEY, "
                "ROLECAST_API_KEY or OPENAI_API_KEY"
            ) from exc
        except (oa.NotFoundError, oa.BadRequestError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            if "voice" in message.lower() and self._voices:
                raise UnknownNameError(f"{self.name} voice", voice, self._voices) from exc
            raise VoiceError(
                f"{self.base_url} refused to speak with model {self.model!r} and voice "
                f"{voice!r}: {message}"
            ) from exc
        except oa.APIStatusError as exc:
            raise VoiceError(
                f"{self.base_url} failed to speak ({exc.status_code}): "
                f"{getattr(exc, 'message', None) or exc}"
            ) from exc
        except oa.APIConnectionError as exc:
            raise VoiceError(f"cannot reach {self.base_url}: {exc}") from exc
        if self.response_format == "pcm":
            return from_pcm16(data, PCM_RATE)
        audio = parse_wav(data, f"the audio from {self.base_url}")
        self.sample_rate = audio.sample_rate
        return audio

    def close(self) -> None:
        self._client.close()
