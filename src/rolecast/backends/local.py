"""The default backend: llama.cpp in process, through ``llama-cpp-python``.

The chat template comes from the GGUF's metadata. llama-cpp-python keeps the tokens
of the last request and evaluates only what differs, so a prompt whose stable part
comes first (``--order cache``, the default here) reuses the KV cache across turns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, MissingDependencyError
from ..prompt.tokens import FunctionCounter
from . import kvstate
from .base import LLM, GenerationParams
from .models import Progress, resolve_model

if TYPE_CHECKING:
    from llama_cpp.llama_cpp import llama_model_params

log = logging.getLogger(__name__)
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

    def safe_defaults() -> llama_model_params:
        params: llama_model_params = original()
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
    # tokens of canon: eval canon measured no fidelity difference between 300, 700 and 1,500
    # tokens on this model, the conversation gate no worse at 300, and every turn evaluates
    # its canon (see the README): the smallest is the quickest reply
    canon_budget = 300

    def __init__(
        self,
        model: str | None = None,
        n_ctx: int = DEFAULT_CONTEXT,
        n_threads: int | None = None,
        seed: int | None = None,
        progress: Progress | None = None,
        verbose: bool = False,
        vocab_only: bool = False,
        lora: str | None = None,
    ) -> None:
        """``vocab_only``: load the tokenizer and not the weights (under a second), for what
        only counts tokens (``rolecast prompt``); such a backend cannot generate. ``lora``:
        an adapter folder made by ``rolecast finetune`` for this model (another model's
        adapter is refused)."""
        try:
            import llama_cpp
            import llama_cpp.llama
        except ImportError:
            raise MissingDependencyError("the local backend", "llama-cpp-python", "local") from None
        path = resolve_model(model, progress=progress)
        options: dict[str, Any] = {"n_ctx": n_ctx, "n_threads": n_threads or os.cpu_count() or 1}
        if seed is not None:
            options["seed"] = seed
        if vocab_only:
            options["vocab_only"] = True
        self.vocab_only = vocab_only
        self.adapter = None
        suffix = ""
        if lora:
            from ..files import file_sha256
            from ..training.adapter import check_base, open_adapter

            self.adapter = open_adapter(lora)
            check_base(self.adapter, path)
            if not vocab_only:
                options["lora_path"] = str(self.adapter.gguf)
            # replies, caches and saved KV states of the tuned model are its own
            suffix = f"+lora-{file_sha256(self.adapter.gguf)[:12]}"
        try:
            with _no_weight_repacking(llama_cpp.llama):
                self._llm = llama_cpp.Llama(model_path=str(path), verbose=verbose, **options)
        except ValueError as exc:
            raise BackendError(f"llama.cpp could not load {path}: {exc}") from exc
        self.context_window = n_ctx
        self.model = path.name + suffix
        self.path = path
        self.states = kvstate.states_dir()
        self._prefixes: dict[Path, list[int]] = {}  # saved states this process knows the tokens of
        self._build = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
        self._version = llama_cpp.__version__

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        if self.vocab_only:
            raise BackendError(f"{self.model} was loaded to count tokens only, not to reply")
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
            choice: Any = chunk["choices"][0]  # type: ignore[index]
            delta = choice["delta"].get("content")
            if delta:
                yield str(delta)

    def _first_tokens(self, texts: Sequence[str]) -> list[int]:
        """The token each text begins with, as a reply's first token."""
        found: list[int] = []
        for text in texts:
            ids = self._llm.tokenize(text.strip().encode(), add_bos=False, special=False)
            if ids and ids[0] not in found:
                found.append(ids[0])
        return found

    def warm(self, prefix: Sequence[dict[str, str]]) -> str:
        """Start the next prompt that begins with ``prefix`` from llama.cpp's state after it:
        kept when the KV cache already begins with it, loaded from the cache folder when
        saved for this model, build, context size and prefix, else evaluated now and saved
        there (atomically). A saved state for anything else, or a damaged one, is never
        loaded: it is rebuilt."""
        if not prefix or self.vocab_only:
            return "none"
        key = {
            "model": self.model,
            "model_bytes": self.path.stat().st_size,
            "n_ctx": self.context_window,
            "llama_cpp": self._version,
            "build": self._build,
            "prefix": kvstate.prefix_digest(prefix),
            "probes": 2,  # states saved before the probes of two roles end one token later
        }
        path = kvstate.path_for(key, self.states)
        known = self._prefixes.get(path)
        if known is not None and self._holds(known):
            return "kept"
        saved = kvstate.read(path, key)
        if saved is not None and self._load_state(saved):
            self._prefixes[path] = saved.tokens
            return "loaded"
        tokens = self._evaluate_prefix(prefix)
        self._prefixes[path] = tokens
        payload = self._state_bytes()
        try:
            kvstate.write(path, key, tokens, payload)
        except Exception as exc:  # a cache that cannot be written costs time, not the chat
            log.warning("could not save the prefix state to %s: %s", path, exc)
        return "built"

    def prefill(self, prefix: Sequence[dict[str, str]]) -> str:
        if not prefix or self.vocab_only:
            return "none"
        self._evaluate_prefix(prefix)  # what the KV cache holds already is not evaluated again
        return "evaluated"

    def _holds(self, tokens: Sequence[int]) -> bool:
        """Whether the KV cache begins with ``tokens`` (the next turn of the same chat)."""
        llm, n = self._llm, len(tokens)
        return llm.n_tokens >= n and [int(t) for t in llm.input_ids[:n]] == list(tokens)

    def _evaluate_prefix(self, prefix: Sequence[dict[str, str]]) -> list[int]:
        """Evaluate ``prefix`` as the chat template renders it, and keep only it in the KV
        cache. Its tokens are what two prompts that go on differently after it share (the
        template's rendering, whatever it is, up to the next message's role); the second
        costs a few tokens."""
        llm = self._llm
        seen = []
        # probes of two roles: the tokens kept stop before the next message's role, so the
        # state serves a prompt that goes on with a user's line or with a system message
        # (a conversation's memory follows the persona's message)
        for probe in ({"role": "user", "content": "1"}, {"role": "system", "content": "2"}):
            messages = [*map(dict, prefix), probe]
            for _ in llm.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                max_tokens=1,
                temperature=0.0,
                stream=True,
            ):
                pass
            seen.append([int(t) for t in llm.input_ids[: llm.n_tokens]])
        n = kvstate.common_prefix(*seen)
        llm._ctx.kv_cache_seq_rm(-1, n, -1)
        llm.n_tokens = n
        return seen[0][:n]

    def _state_bytes(self) -> bytes:
        import ctypes

        from llama_cpp import llama_cpp as low

        ctx = self._llm._ctx.ctx
        size = low.llama_state_get_size(ctx)
        buf = (ctypes.c_uint8 * size)()
        written = low.llama_state_get_data(ctx, buf, size)
        return bytes(buf)[:written]

    def _load_state(self, saved: kvstate.Saved) -> bool:
        import ctypes

        from llama_cpp import llama_cpp as low

        llm = self._llm
        n = len(saved.tokens)
        if n >= (self.context_window or 0):
            return False
        buf = (ctypes.c_uint8 * len(saved.payload)).from_buffer_copy(saved.payload)
        if low.llama_state_set_data(llm._ctx.ctx, buf, len(saved.payload)) != len(saved.payload):
            log.warning("llama.cpp did not take the saved prefix state: it will be rebuilt")
            llm.reset()  # type: ignore[no-untyped-call]  # llama-cpp-python leaves it unannotated
            return False
        llm.input_ids[:n] = saved.tokens
        llm.n_tokens = n
        return True

    def token_counter(self) -> FunctionCounter:
        tokenize = self._llm.tokenize
        return FunctionCounter(
            f"gguf:{self.model}", lambda text: tokenize(text.encode(), add_bos=False, special=False)
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._llm.close()
