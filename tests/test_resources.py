"""The shared cache of slow things (``rolecast.resources``): each key made once, a slow make
holding up only its own key, failures not kept, values closed once. Real threads throughout,
each wait bounded; no sleep stands in for an event."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from rolecast.resources import ResourceCache

V = TypeVar("V")
WAIT = 10.0  # seconds any one wait may take before the test fails instead of hanging


class Key:
    """A key that notes the threads that have looked it up in the cache (hashing it is the
    first thing a lookup does), so a test knows when every caller has found a make going on."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lookers: set[int] = set()
        self.looked = threading.Condition()

    def __hash__(self) -> int:
        with self.looked:
            self.lookers.add(threading.get_ident())
            self.looked.notify_all()
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.name == self.name

    def wait_for(self, threads: int) -> bool:
        with self.looked:
            return self.looked.wait_for(lambda: len(self.lookers) >= threads, WAIT)

    def __repr__(self) -> str:
        return f"Key({self.name!r})"


class Closable:
    def __init__(self, name: str, fails: bool = False) -> None:
        self.name, self.fails, self.closed = name, fails, 0

    def close(self) -> None:
        self.closed += 1
        if self.fails:
            raise OSError(f"{self.name} would not close")


def held(value: V) -> tuple[Callable[[], V], threading.Event, threading.Event]:
    """A make that returns ``value`` once ``release`` is set, and says it ``started``."""
    started, release = threading.Event(), threading.Event()

    def make() -> V:
        started.set()
        assert release.wait(WAIT)
        return value

    return make, started, release


def in_threads(count: int, call: Callable[[], Any]) -> tuple[list[threading.Thread], list[Any]]:
    """``count`` threads, started, each putting what ``call()`` returns or raises in the list."""
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as exc:  # the test looks at what each thread got
            results.append(exc)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    return threads, results


def joined(threads: list[threading.Thread]) -> bool:
    for t in threads:
        t.join(WAIT)
    return not any(t.is_alive() for t in threads)


def test_a_slow_make_holds_up_no_other_key() -> None:
    cache: ResourceCache[str, str] = ResourceCache()
    cache["index B"] = "B"  # already loaded
    slow, started, release = held("A")

    loading, got_a = in_threads(1, lambda: cache.get("model A", slow))
    try:
        assert started.wait(WAIT)
        # asked for in other threads while A loads: both come back before A is released
        others, got = in_threads(
            1, lambda: (cache.get("index B", lambda: "not B"), cache.get("model C", lambda: "C"))
        )
        assert joined(others), "a request for another key waited for model A's load"
        assert got == [("B", "C")] and not got_a
        assert cache.keys() == ["model A", "index B", "model C"]  # A is held while it loads
    finally:
        release.set()
    assert joined(loading) and got_a == ["A"]


def test_concurrent_gets_of_one_missing_key_make_it_once() -> None:
    cache: ResourceCache[Key, object] = ResourceCache()
    key, callers, calls = Key("model"), 8, []

    def make() -> object:
        calls.append(threading.get_ident())
        # every caller has found this make going on before it ends
        assert key.wait_for(callers)
        return object()

    threads, got = in_threads(callers, lambda: cache.get(key, make))
    assert joined(threads)
    assert len(calls) == 1 and len(got) == callers
    assert all(value is got[0] for value in got)  # one object, shared by every caller
    assert cache.get(key, object) is got[0] and len(calls) == 1  # and kept


def test_a_failed_make_reaches_every_waiter_and_is_tried_again() -> None:
    cache: ResourceCache[Key, str] = ResourceCache()
    key, callers, calls = Key("voice"), 4, []

    def broken() -> str:
        calls.append(1)
        assert key.wait_for(callers)
        raise OSError("no such voice file")

    threads, got = in_threads(callers, lambda: cache.get(key, broken))
    assert joined(threads)
    assert len(calls) == 1 and len(got) == callers
    assert all(isinstance(e, OSError) and str(e) == "no such voice file" for e in got)
    assert key not in cache and len(cache) == 0  # the failure is not kept
    assert cache.get(key, lambda: "fine") == "fine"  # the next call tries again
    assert cache.get(key, broken) == "fine" and len(calls) == 1


def test_the_least_recently_used_made_value_is_dropped_first() -> None:
    cache: ResourceCache[str, str] = ResourceCache(2)
    made: list[str] = []

    def make(key: str) -> Callable[[], str]:
        return lambda: made.append(key) or key.upper()

    assert [cache.get(k, make(k)) for k in ("a", "b", "a", "c")] == ["A", "B", "A", "C"]
    assert cache.keys() == ["a", "c"] and made == ["a", "b", "c"]  # b, least recent, went
    assert cache.get("b", make("b")) == "B" and made[-1] == "b"  # made again when asked for
    # a value being made is never the one dropped: its callers are waiting for it
    slow, started, release = held("SLOW")

    threads, got = in_threads(1, lambda: cache.get("slow", slow))
    try:
        assert started.wait(WAIT)
        for k in ("d", "e", "f"):
            cache.get(k, make(k))
        assert "slow" in cache and cache.keys() == ["slow", "f"]
    finally:
        release.set()
    assert joined(threads) and got == ["SLOW"]
    with pytest.raises(ValueError, match="at least one"):
        ResourceCache(0)


def test_close_closes_each_value_once_and_forgets_them() -> None:
    cache: ResourceCache[str, Any] = ResourceCache()
    model, voice, broken = Closable("model"), Closable("voice"), Closable("broken", fails=True)
    cache["model"] = model
    cache["same model, another name"] = model
    cache["broken"] = broken
    cache["voice"] = voice
    cache["index"] = ("no close method", 1)
    with pytest.raises(OSError, match="broken would not close"):
        cache.close()  # the failing one does not keep the later ones open
    assert (model.closed, voice.closed, broken.closed) == (1, 1, 1)
    assert len(cache) == 0
    cache.close()  # nothing left: nothing closed twice
    assert (model.closed, voice.closed, broken.closed) == (1, 1, 1)
    again = cache.get("model", lambda: Closable("model"))  # made anew after a close
    assert again is not model and again.closed == 0


def test_close_leaves_a_value_still_being_made_for_a_later_close() -> None:
    cache: ResourceCache[str, Closable] = ResourceCache()
    slow = Closable("slow")
    make, started, release = held(slow)

    threads, got = in_threads(1, lambda: cache.get("slow", make))
    try:
        assert started.wait(WAIT)
        cache.close()
        assert "slow" in cache and slow.closed == 0
    finally:
        release.set()
    assert joined(threads) and got == [slow] and slow.closed == 0
    cache.close()
    assert slow.closed == 1 and "slow" not in cache


def test_a_make_that_asks_for_its_own_key_fails_instead_of_waiting_forever() -> None:
    cache: ResourceCache[str, str] = ResourceCache()

    def loop() -> str:
        return cache.get("a", loop)

    threads, got = in_threads(1, lambda: cache.get("a", loop))
    assert joined(threads), "the make waited for itself"
    assert isinstance(got[0], RuntimeError) and "'a'" in str(got[0])
    assert "a" not in cache


def test_many_threads_on_many_keys_each_key_made_once() -> None:
    cache: ResourceCache[int, int] = ResourceCache()
    calls: dict[int, int] = {}
    lock = threading.Lock()
    go = threading.Barrier(8, timeout=WAIT)

    def make(key: int) -> int:
        with lock:
            calls[key] = calls.get(key, 0) + 1
        return key * key

    def run() -> list[int]:
        go.wait()
        return [cache.get(k % 50, lambda k=k % 50: make(k)) for k in range(500)]

    threads, got = in_threads(8, run)
    assert joined(threads)
    assert all(g == [(k % 50) ** 2 for k in range(500)] for g in got)
    assert calls == {k: 1 for k in range(50)} and len(cache) == 50
