"""Replies that a client cannot use to hold the model: it goes away, it stops reading.

An in-process model serves one request at a time (``LockedLLM``), so whatever holds a
generation open holds up every other key's request. Three rules keep that short:

- A client that goes away stops its generation: the request's ``stop`` event is set, the
  generating thread raises ``ClientGone`` at the backend's next chunk, and the chunk generator is
  closed there and then (``close``), which releases the backend's lock. Nothing waits for the
  garbage collector.
- A streaming client that reads too slowly is cut off once it has kept the server waiting
  ``send_timeout`` seconds in all (the model waits with it: a reply is generated as it is sent).
- A turn is recorded only when its client is still there once the reply is complete: just
  before the last bytes go out (the finish event of a stream, the body of a plain reply), so a
  client that has its reply finds the turn in the session when it sends the next line.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

log = logging.getLogger(__name__)

SEND_TIMEOUT = 10.0  # seconds in all a streaming client may keep the server waiting to send
BODY_TIMEOUT = 30.0  # seconds a client has to send its whole request body
CLIENT_CLOSED = 499  # nginx's "client closed request": the status of a response nobody reads
STALL_CHECK_S = 0.5  # how often a stream's watchdog looks for a client that keeps it waiting

T = TypeVar("T")


class ClientGone(Exception):
    """Raised in a generating thread once the request's client has gone: generation stops."""


async def disconnected(receive: Receive) -> None:
    """Return once the client has gone (call it after the request body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def close(chunks: Iterator[str]) -> None:
    """Close a chunk generator, also from a cancelled task: its generation ends and what it
    holds (a ``LockedLLM``'s lock) is released now. One stopped mid-reply is closed in a
    worker thread, since its clean-up runs the backend's (one not started or over has none)."""
    if inspect.isgenerator(chunks) and inspect.getgeneratorstate(chunks) != inspect.GEN_SUSPENDED:
        chunks.close()
        return
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(getattr(chunks, "close", lambda: None))


async def run_while_connected(
    receive: Receive, stop: threading.Event, func: Callable[..., T], *args: Any
) -> T | None:
    """``func(*args)`` in a worker thread; None if the client goes meanwhile (``stop`` is set
    then, for ``func`` to end early with ``ClientGone``). ``func``'s errors come out as they are."""
    result: T | None = None
    error: Exception | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            await disconnected(receive)
            stop.set()

        tg.start_soon(watch)
        try:
            result = await anyio.to_thread.run_sync(functools.partial(func, *args))
        except ClientGone:
            pass
        except Exception as exc:  # re-raised below, outside the task group's exception group
            error = exc
        tg.cancel_scope.cancel()
    if stop.is_set():
        return None
    if error is not None:
        raise error
    return result


class ReplyStream(Response):
    """A server-sent-event reply from ``events``, which makes each event as it is sent.

    It ends when ``events`` does, when the client goes (``stop`` is set, so a generation in
    progress ends at its next chunk) or when the client has kept it waiting ``send_timeout``
    seconds in all; ``events`` is closed however it ended, at once. One watcher task looks for
    both, a few times a second (a cancel scope around each send would cost more than sending).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncGenerator[str, None],
        stop: threading.Event,
        send_timeout: float = SEND_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.events, self.stop, self.send_timeout = events, stop, send_timeout
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self.waited = 0.0  # seconds spent in sends that are over
        self.sending_since: float | None = None  # when the send in progress began
        self.sent = False  # the whole reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, receive, tg.cancel_scope)
                await self._send_all(send)
        finally:
            self.stop.set()
            with anyio.CancelScope(shield=True):
                await self.events.aclose()

    async def _watch(self, receive: Receive, sending: anyio.CancelScope) -> None:
        """Until the client goes (as ASGI says it does once the reply is sent; before that,
        the reply stops) or has kept the stream waiting too long (it is cut off)."""
        period = max(min(STALL_CHECK_S, self.send_timeout / 4), 0.01)
        while True:
            with anyio.move_on_after(period):
                await disconnected(receive)
                if not self.sent:
                    self.stop.set()
                    sending.cancel()
                return
            if self.kept_waiting() > self.send_timeout:
                log.warning(
                    "a streaming client kept the server waiting %.1f s to read: cut off, its "
                    "turn not recorded",
                    self.kept_waiting(),
                )
                sending.cancel()
                return

    def kept_waiting(self) -> float:
        """Seconds in all the client has kept the server waiting to take what it sent."""
        since = self.sending_since
        return self.waited + (time.monotonic() - since if since is not None else 0.0)

    async def _send_all(self, send: Send) -> None:
        async def timed(message: Message) -> None:
            self.sending_since = start = time.monotonic()
            await send(message)
            self.sending_since = None
            self.waited += time.monotonic() - start

        await timed(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        try:
            async for event in self.events:
                await timed(
                    {"type": "http.response.body", "body": event.encode(), "more_body": True}
                )
        except ClientGone:
            return
        await timed({"type": "http.response.body", "body": b"", "more_body": False})
        self.sent = True
