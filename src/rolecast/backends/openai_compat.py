"""Any OpenAI-compatible endpoint (OpenAI, DeepSeek, vLLM, llama.cpp server, Ollama, LM
Studio) through the official ``openai`` SDK.

Retries are done here, not by the SDK, because a retry must never happen once part of
the reply has been shown: 429, 5xx, connection errors and time-outs before the first
token are retried with exponential backoff (honouring ``Retry-After``); after it, the
turn fails with a clear message and the session keeps its history as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import BackendError, MissingDependencyError
from .base import LLM, GenerationParams

OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 60.0  # seconds to wait for data
MAX_STOPS = 4  # the OpenAI API accepts at most four stop sequences
MAX_DELAY = 30.0  # seconds: the longest wait between two tries


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` (or ``retry-after-ms``) header."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


def _penalties(params: GenerationParams) -> dict[str, float]:
    """The penalties that are set (some endpoints refuse fields they do not know)."""
    pairs = (
        ("presence_penalty", params.presence_penalty),
        ("frequency_penalty", params.frequency_penalty),
    )
    return {k: v for k, v in pairs if v}


class OpenAILLM(LLM):
    thread_safe = True  # one HTTP client, one request per stream
    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        context_window: int | None = None,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        try:
            import openai
        except ImportError:
            raise MissingDependencyError("the openai backend", "openai", extra="openai") from None
        self._openai = openai
        self.base_url = base_url or OPENAI_URL
        key = api_key
        if not key:
            if self.base_url == OPENAI_URL:
                raise BackendError(
                    "the openai backend needs an API key for api.openai.com: set "
                    "ROLECAST_API_KEY (or OPENAI_API_KEY), pass --api-key, or run "
                    "'rolecast config set api_key KEY'; for a local server set ROLECAST_BASE_URL"
                )
            key = "no-key"  # local servers take any key
        if not model:
            raise BackendError(
                "the openai backend needs a model: pass --model, set ROLECAST_MODEL or run "
                "'rolecast config set model NAME'"
            )
        self.model = model
        seconds = float(timeout if timeout is not None else DEFAULT_TIMEOUT)
        self.retries, self.backoff, self._sleep = retries, backoff, sleep
        self.context_window = context_window
        self._client = client or openai.OpenAI(
            base_url=self.base_url, api_key=key, timeout=seconds, max_retries=0
        )

    def _describe(self, exc: Exception) -> str:
        status = getattr(exc, "status_code", None)
        body = getattr(exc, "message", None) or str(exc)
        return f"{status} {body}" if status else body

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        oa = self._openai
        attempt = 0
        while True:
            shown = False
            try:
                chunks = self._client.chat.completions.create(  # type: ignore[call-overload]
                    model=self.model,
                    messages=[dict(m) for m in messages],
                    stream=True,
                    max_tokens=params.max_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    **_penalties(params),
                    stop=list(params.stop[:MAX_STOPS]) or None,
                    seed=params.seed,
                )
                finished = False
                for chunk in chunks:
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    finished = finished or bool(choice.finish_reason)
                    if choice.delta.content:
                        shown = True
                        yield choice.delta.content
                if not finished:  # the body ended without the server saying it was done
                    raise oa.APIConnectionError(
                        message="stream ended early", request=chunks.response.request
                    )
                return
            except oa.AuthenticationError as exc:
                raise BackendError(
                    f"{self.base_url} refused the API key (401): check ROLECAST_API_KEY, "
                    "OPENAI_API_KEY or 'rolecast config set api_key KEY'"
                ) from exc
            except oa.NotFoundError as exc:
                raise BackendError(
                    f"{self.base_url} does not know the model {self.model!r} (404): "
                    f"{self._describe(exc)}"
                ) from exc
            except (oa.RateLimitError, oa.InternalServerError, oa.APIConnectionError) as exc:
                what = "timed out" if isinstance(exc, oa.APITimeoutError) else self._describe(exc)
                if shown:
                    raise BackendError(
                        f"the reply from {self.base_url} broke off ({what}); nothing was saved, "
                        "say it again to retry"
                    ) from exc
                if attempt >= self.retries:
                    hint = ""
                    if isinstance(exc, oa.APIConnectionError):  # refused, unreachable, timed out
                        hint = (
                            f"; check that the server at {self.base_url} is running and "
                            "reachable (--base-url, ROLECAST_BASE_URL)"
                        )
                    raise BackendError(
                        f"{self.base_url} failed {attempt + 1} times, last: {what}{hint}"
                    ) from exc
                response = getattr(exc, "response", None)
                wait = retry_after(response.headers if response is not None else None)
                self._sleep(min(wait if wait is not None else self.backoff * 2**attempt, MAX_DELAY))
                attempt += 1
            except oa.APIStatusError as exc:
                raise BackendError(
                    f"{self.base_url} refused the request: {self._describe(exc)}"
                ) from exc

    def close(self) -> None:
        self._client.close()
