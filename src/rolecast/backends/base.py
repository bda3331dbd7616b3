"""The LLM contract: chat messages in, text chunks out.

A backend implements ``stream``; it keeps no prompt state (assembly happens in
``rolecast.prompt``), so any backend can be swapped for another or for the
scripted one in tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..prompt.tokens import TokenCounter

if TYPE_CHECKING:
    from ..prompt.assemble import Order

LOCK_POLL_S = 0.25  # how often a reply waiting for a LockedLLM checks whether it is still wanted


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 384
    temperature: float = 0.8
    top_p: float = 0.9
    repeat_penalty: float = 1.1  # small models loop without one
    # OpenAI's penalties on tokens already in the context (llama.cpp has them too): 0 is off
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # texts the reply must not begin like: a backend that can forbids each one's first token
    # as the reply's first (the local one does; others ignore it). The session's retries use it
    avoid: tuple[str, ...] = ()


class LLM:
    name: ClassVar[str] = "base"
    thread_safe: ClassVar[bool] = False  # may stream several replies at once from threads
    context_window: int | None = None  # tokens, when known
    model: str = ""
    # the prompt order that suits the backend when the user has not chosen one: "cache" where
    # the backend keeps the previous prompt's KV cache and reuses its longest common prefix
    prompt_order: ClassVar[Order] = "classic"
    # the most canon tokens worth sending (None: a share of the context window). A small
    # model copies and drifts with more examples than it can use
    canon_budget: ClassVar[int | None] = None

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        """Yield the reply's text as it is generated."""
        raise NotImplementedError

    def token_counter(self) -> TokenCounter | None:
        """The exact tokenizer of the model, when the backend has it."""
        return None

    def warm(self, prefix: Sequence[dict[str, str]]) -> str:
        """Get ready for prompts that begin with the messages ``prefix`` (a character's
        persona and rules): a backend with a KV cache evaluates it now, or loads it saved.
        Says what it did: "kept" (it held it already), "loaded", "built" or "none"
        (nothing to do for this backend)."""
        return "none"

    def prefill(self, prefix: Sequence[dict[str, str]]) -> str:
        """Evaluate the messages ``prefix`` (persona and the history so far: the start of
        the next prompt) now, while the user reads and types, and keep nothing on disk.
        Says what it did: "evaluated" or "none" (nothing to do for this backend)."""
        return "none"

    def close(self) -> None:
        """Release resources (models, connections)."""


class WrappedLLM(LLM):
    """A backend seen through a wrapper: what the wrapper does not change (its name, model,
    context window, prompt order, calls) is the inner backend's."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def context_window(self) -> int | None:  # type: ignore[override]
        return self.inner.context_window

    @property
    def model(self) -> str:  # type: ignore[override]
        return self.inner.model

    @property
    def prompt_order(self) -> Order:  # type: ignore[override]
        return self.inner.prompt_order

    @property
    def canon_budget(self) -> int | None:  # type: ignore[override]
        return self.inner.canon_budget

    def __getattr__(self, attr: str) -> Any:  # anything else the inner backend has
        if attr == "inner":  # not set yet (a copy being made): no recursion
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        return self.inner.stream(messages, params)

    def token_counter(self) -> TokenCounter | None:
        return self.inner.token_counter()

    def warm(self, prefix: Sequence[dict[str, str]]) -> str:
        return self.inner.warm(prefix)

    def prefill(self, prefix: Sequence[dict[str, str]]) -> str:
        return self.inner.prefill(prefix)

    def close(self) -> None:
        self.inner.close()


class LockedLLM(WrappedLLM):
    """A backend shared by threads that must not generate at once (an in-process model).

    A reply holds the lock from its first chunk until its generator ends or is closed: a
    caller that may abandon a reply (its client went away) must close the generator.
    """

    def __init__(self, inner: LLM) -> None:
        super().__init__(inner)
        self.lock = threading.Lock()

    def stream(
        self,
        messages: Sequence[dict[str, str]],
        params: GenerationParams,
        stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """The inner backend's reply, once no other is generating. With ``stop``: nothing if
        it is set by the time the lock is free (the caller has given up: the model is not
        started for it, and a caller that gives up while waiting stops waiting)."""
        if stop is None:
            self.lock.acquire()
        else:
            while not self.lock.acquire(timeout=LOCK_POLL_S):
                if stop.is_set():
                    return
        try:
            if stop is None or not stop.is_set():
                yield from self.inner.stream(messages, params)
        finally:
            self.lock.release()

    def warm(self, prefix: Sequence[dict[str, str]]) -> str:
        with self.lock:
            return self.inner.warm(prefix)

    def prefill(self, prefix: Sequence[dict[str, str]]) -> str:
        with self.lock:
            return self.inner.prefill(prefix)


def shared(llm: LLM) -> LLM:
    """``llm`` made safe to share between threads."""
    return llm if llm.thread_safe or isinstance(llm, LockedLLM) else LockedLLM(llm)


def get_llm(name: str, **options: Any) -> LLM:
    from .. import registry

    llm: LLM = registry.create("llm", name, **options)
    return llm
