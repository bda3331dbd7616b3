"""Deterministic backends for tests and demos: no model, no network."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence

from ..errors import BackendError
from .base import LLM, GenerationParams


class ScriptedLLM(LLM):
    """Replies with queued answers, in order, chunk by chunk; records every request.

    ``enqueue("text")`` streams the text in small chunks; ``enqueue(["a", "b"])``
    streams exactly those chunks; ``enqueue(SomeError(...))`` raises it after the
    chunks queued before it in the same entry.
    """

    name = "scripted"

    def __init__(
        self,
        replies: Iterable[str | Sequence[str]] = (),
        context_window: int | None = None,
        chunk_size: int = 3,
        model: str | None = None,
    ) -> None:
        self.queue: deque[str | Sequence[str | BaseException]] = deque(replies)
        self.requests: list[tuple[list[dict[str, str]], GenerationParams]] = []
        self.context_window = context_window
        self.chunk_size = chunk_size
        self.model = model or "scripted"  # a test may name the model it stands in for

    def enqueue(self, reply: str | Sequence[str | BaseException]) -> ScriptedLLM:
        self.queue.append(reply)
        return self

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        self.requests.append(([dict(m) for m in messages], params))
        if not self.queue:
            raise BackendError("scripted backend has no reply queued")
        reply = self.queue.popleft()
        chunks: Sequence[str | BaseException]
        if isinstance(reply, str):
            n = self.chunk_size
            chunks = [reply[i : i + n] for i in range(0, len(reply), n)]
        else:
            chunks = reply
        for chunk in chunks:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk


class EchoLLM(LLM):
    """Says back the user's last line: a stand-in that proves the pipeline, not a model."""

    name = "echo"

    def __init__(self) -> None:
        self.model = "echo"

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        from ..character.dialogue import parse_line

        last, _ = parse_line(messages[-1]["content"].rsplit("\n", 1)[-1])
        yield from (last.text[i : i + 4] for i in range(0, len(last.text), 4))
