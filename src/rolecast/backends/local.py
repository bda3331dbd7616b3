"""The default backend: llama.cpp in process, through ``llama-cpp-python``.

The chat template comes from the GGUF's metadata. llama-cpp-python keeps the tokens
of the last request and evaluates only what differs, so a prompt whose stable part
comes first (``--order cache``, the default here) reuses the KV cache across turns.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import BackendError, MissingDependencyError
from ..prompt.tokens import FunctionCounter
from .base import LLM, GenerationParams
from .models import Progress, resolve_model

DEFAULT_CONTEXT = 4096
_load_lock = threading.Lock()


@contextlib.contextmanager
def _no_weight_repacking(llama_module: Any) -> Iterator[None]:
    """Load with ``use_extra_bufts = False``.

    llama.cpp builds that include the Intel AMX kernels crash on the first decode on
    CPUs that advertise AMX (in ``ggml_backend_amx_mul_mat``); the AMX path is only
    reached through the extra buffer types used for weight repacking, so turning them
    off makes any build safe. Our own setup also builds with AMX off.
    """
    low = llama_module.llama_cpp
    original = low.llama_model_default_params

    def safe_defaults():  # type: ignore[no-untyped-def]
        params = original()
        params.use_extra_bufts = False
        return params

    with _load_lock:
        low.llama_model_default_params = safe_defaults
        try:
            yield
        finally:
            low.llama_model_default_params = original


class _FirstTokenBan:
    """A llama-cpp-python logits processor that forbids ``banned`` as the first token it
    samples: called with the prompt's tokens first, then one more each step."""

    def __init__(self, banned: Sequence[int]) -> None:
        self.banned = list(banned)
        self.prompt: int | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.prompt is None:
            self.prompt = len(input_ids)
        if len(input_ids) == self.prompt:
            scores[self.banned] = -float("inf")
        return scores


class LocalLLM(LLM):
    name = "local"
    # llama-cpp-python reuses the longest common prefix of the last prompt: the split order
    # keeps persona + history as that prefix and sends the canon as a system message before the
    # line (the cache order, canon inside the user's turn, made the small model answer it)
    prompt_order = "split"
    canon_budget = 700  # tokens of canon; chosen on the conversation gate (see the README)

    def __init__(
        self,
        model: str | None = None,
        n_ctx: int = DEFAULT_CONTEXT,
        n_threads: int | None = None,
        seed: int | None = None,
        progress: Progress | None = None,
        verbose: bool = False,
        **_: Any,
    ) -> None:
        try:
            import llama_cpp
            import llama_cpp.llama
        except ImportError:
            raise MissingDependencyError("the local backend", "llama-cpp-python", "local") from None
        path = resolve_model(model, progress=progress)
        options: dict[str, Any] = {"n_ctx": n_ctx, "n_threads": n_threads or os.cpu_count() or 1}
        if seed is not None:
            options["seed"] = seed
        try:
            with _no_weight_repacking(llama_cpp.llama):
                self._llm = llama_cpp.Llama(model_path=str(path), verbose=verbose, **options)
        except ValueError as exc:
            raise BackendError(f"llama.cpp could not load {path}: {exc}") from exc
        self.context_window = n_ctx
        self.model = path.name
        self.path = path

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        extra: dict[str, Any] = {}
        banned = self._first_tokens(params.avoid)
        if banned:
            extra["logits_processor"] = [_FirstTokenBan(banned)]
        chunks = self._llm.create_chat_completion(
            messages=[dict(m) for m in messages],  # type: ignore[misc]
            stream=True,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            repeat_penalty=params.repeat_penalty,
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
            stop=list(params.stop) or None,
            seed=params.seed,
            **extra,
        )
        for chunk in chunks:
            delta = chunk["choices"][0]["delta"].get("content")  # type: ignore[index]
            if delta:
                yield delta

    def _first_tokens(self, texts: Sequence[str]) -> list[int]:
        """The token each text begins with, as a reply's first token."""
        found: list[int] = []
        for text in texts:
            ids = self._llm.tokenize(text.strip().encode(), add_bos=False, special=False)
            if ids and ids[0] not in found:
                found.append(ids[0])
        return found

    def token_counter(self) -> FunctionCounter:
        tokenize = self._llm.tokenize
        return FunctionCounter(
            f"gguf:{self.model}", lambda text: tokenize(text.encode(), add_bos=False, special=False)
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._llm.close()
