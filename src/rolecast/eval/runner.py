"""Running an evaluation's items: from the cache when done before, else through ``work``,
concurrently when the backend allows it.

A backend that declares ``thread_safe`` (the openai backend: one HTTP request per reply)
gets up to ``workers`` requests at once, so a server that batches or a remote API is kept
busy; any other backend (llama.cpp in process) is driven one item at a time. Each finished
item goes into the cache at once, so an interrupted run loses only the items in flight and
the next run resumes where it stopped.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import tomllib
from ..errors import NoReplyError

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import LLM
    from ..prompt.assemble import Turn
    from ..session import Session
    from .report import Cache

log = logging.getLogger(__name__)

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (items done, items in all), as the CLI's progress lines
Ask = Callable[[str], str]  # one user line in, the character's reply out
DEFAULT_WORKERS = 4  # requests in flight against a thread-safe backend


def read_data(name: str) -> dict[str, Any]:
    """A TOML file of the package's ``eval/data`` (the BFI items, the probes)."""
    path = resources.files("rolecast.eval").joinpath("data", name)
    return tomllib.loads(path.read_text(encoding="utf-8"))


def item_seed(seed: int, *key: object) -> int:
    """The sampling seed of one item (a held-out turn, a question, a probe, a chat): a hash
    of the run's ``seed`` and the item's ``key``, the same on every run and in every
    condition, so conditions are paired and a cached item is the item sampled again."""
    text = "\0".join(str(part) for part in (seed, *key))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def fresh_session(prototype: Session, seed: int, history: Sequence[Turn] = ()) -> Session:
    """A new Session set up like ``prototype`` (character, index, backend, budget, order,
    mode, reply clean-up), sampled with ``seed``, starting from ``history``: nothing
    carries over from one item to the next.

    A copy, not a new Session: what a session works out from its character once (the reply
    clean-up, the recital and identity checks, the stop words) is read-only
    and shared, so an evaluation or a dataset of thousands of items does not redo it each time.
    """
    session = copy.copy(prototype)
    session.params = replace(prototype.params, seed=seed)
    session.history = list(history)
    session.last = session.pending = None
    if prototype.memory is not None:  # a memory of its own, as a new chat has
        from ..memory import Memory

        session.memory = Memory(prototype.memory.embedder)
    return session


def asker(prototype: Session, seed: int) -> Ask:
    """An ``ask`` that puts a line to a fresh session like ``prototype`` sampled with
    ``seed``, and gives its reply ("" when the session gave up on one: an empty reply is
    scored as such)."""

    def ask(text: str) -> str:
        try:
            return fresh_session(prototype, seed).reply(text)
        except NoReplyError:
            return ""

    return ask


def workers_for(llm: LLM | None, requested: int | None = None) -> int:
    """How many items may run at once with ``llm``: ``requested`` (default
    ``DEFAULT_WORKERS``) for a thread-safe backend, 1 for any other."""
    wanted = DEFAULT_WORKERS if requested is None else requested
    if wanted < 1:
        from ..errors import InputError

        raise InputError(f"--concurrency must be at least 1, not {wanted}")
    if llm is None or not llm.thread_safe:
        if wanted > 1 and llm is not None:
            log.info("backend %s is not thread-safe: running items one at a time", llm.name)
        return 1
    return wanted


def run_items(
    items: Sequence[T],
    work: Callable[[T], Any],
    *,
    key: Callable[[T], Any] | None = None,
    cache: Cache | None = None,
    workers: int = 1,
    progress: Progress | None = None,
) -> list[Any]:
    """``work(item)`` for each item, in item order, skipping those in ``cache``.

    ``key(item)`` is the JSON-able identity of an item in the cache (default: the item);
    ``work`` returns a JSON-able value that is not ``None``. ``progress(done, total)`` is
    called from the calling thread after each item (cached items count at once). The first
    failure stops the run: items not started are dropped, the ones running finish and are
    cached, and the error is raised.
    """
    keyof = key or (lambda item: item)
    total = len(items)
    results: list[Any] = [None] * total
    todo: list[int] = []
    for i, item in enumerate(items):
        cached = cache.get(keyof(item)) if cache is not None else None
        if cached is None:
            todo.append(i)
        else:
            results[i] = cached
    done = total - len(todo)
    if progress is not None:
        progress(done, total)

    def run_one(i: int) -> Any:
        value = work(items[i])
        if value is None:
            raise ValueError(f"work returned None for item {i}")
        if cache is not None:
            cache.put(keyof(items[i]), value)
        return value

    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            results[i] = run_one(i)
            done += 1
            if progress is not None:
                progress(done, total)
        return results

    stop = threading.Event()

    def guarded(i: int) -> Any:
        if stop.is_set():  # an earlier item failed: do not start new work
            return None
        return run_one(i)

    pool = ThreadPoolExecutor(max_workers=min(workers, len(todo)), thread_name_prefix="eval")
    try:
        pending: dict[Future[Any], int] = {pool.submit(guarded, i): i for i in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in finished:
                i = pending.pop(future)
                exc = future.exception()
                if exc is not None:
                    stop.set()
                    for other in pending:
                        other.cancel()
                    raise exc
                results[i] = future.result()
                done += 1
                if progress is not None:
                    progress(done, total)
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results
