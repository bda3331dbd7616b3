"""Things slow to make and shared by threads: a character's index, a backend model, a voice.

:class:`ResourceCache` makes each key's value once, in the thread of the first caller that asks
for it. The cache's own lock is held only to look a key up, never while a value is made: each
key has its own slot, and only the callers that want that key wait on it. So loading model A
holds up the requests for A alone, not those for index B (already loaded) or for model C.

A make that fails is not kept: its error is raised in the caller that made it and in every
caller that waited on that attempt, and the next call tries again. With ``size``, the least
recently used values over it are dropped; a dropped value is not closed, since a request may
still hold it. :meth:`ResourceCache.close` closes what is held, each value once.

The web page and the HTTP server keep their indexes, models and voices in these.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Slot(Generic[V]):
    """One key's value: being made (``done`` not set, ``maker`` the thread making it) or made
    (``value``), or its make failed (``error``, for the callers that waited on it)."""

    value: V

    def __init__(self, maker: int | None) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.maker = maker

    @classmethod
    def made(cls, value: V) -> _Slot[V]:
        slot: _Slot[V] = cls(None)
        slot.value = value
        slot.done.set()
        return slot


class ResourceCache(Generic[K, V]):
    """Values by key, each made once by ``get(key, make)`` and shared; at most ``size`` of
    them (None: no bound), the least recently used dropped first."""

    def __init__(self, size: int | None = None) -> None:
        if size is not None and size < 1:
            raise ValueError("a bounded cache holds at least one value")
        self.size = size
        self._slots: OrderedDict[K, _Slot[V]] = OrderedDict()
        self._lock = threading.Lock()  # guards _slots only: never held while a value is made

    def get(self, key: K, make: Callable[[], V]) -> V:
        """The value for ``key``; the first caller that needs it calls ``make()``, and the
        callers that ask meanwhile wait for that one call and get what it returns or raises."""
        me = threading.get_ident()
        with self._lock:
            slot = self._slots.get(key)
            mine = slot is None
            if slot is None:
                slot = self._slots[key] = _Slot(me)
                self._trim()
            else:
                self._slots.move_to_end(key)
        if mine:
            return self._make(key, slot, make)
        if slot.maker == me and not slot.done.is_set():  # it would wait for itself forever
            raise RuntimeError(f"{key!r} was asked for while being made, by its own make()")
        slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.value

    def _make(self, key: K, slot: _Slot[V], make: Callable[[], V]) -> V:
        try:
            slot.value = make()
        except BaseException as exc:
            slot.error = exc
            with self._lock:  # forgotten before the waiters wake: the next call tries again
                if self._slots.get(key) is slot:
                    del self._slots[key]
            raise
        finally:
            slot.done.set()
        return slot.value

    def __setitem__(self, key: K, value: V) -> None:
        """Put ``value`` in as if made (a test's scripted backend)."""
        with self._lock:
            self._slots[key] = _Slot.made(value)
            self._slots.move_to_end(key)
            self._trim()

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._slots

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)

    def keys(self) -> list[K]:
        """The keys held or being made, the least recently used first."""
        with self._lock:
            return list(self._slots)

    def close(self) -> None:
        """Forget every value made so far and close each one that has a ``close`` method,
        once (an object held under two keys is closed once). A value still being made is
        kept, for a later ``close``. One close that fails does not keep the others open: its
        error is logged, and the first such error is raised once every value was tried."""
        with self._lock:
            made = [(key, slot) for key, slot in self._slots.items() if slot.done.is_set()]
            for key, _ in made:
                del self._slots[key]
        closed: set[int] = set()
        failed: Exception | None = None
        for key, slot in made:
            value = slot.value
            closer = getattr(value, "close", None)
            if id(value) in closed or not callable(closer):
                continue
            closed.add(id(value))
            try:
                closer()
            except Exception as exc:
                log.warning("closing %r failed: %s", key, exc)
                failed = failed or exc
        if failed is not None:
            raise failed

    def _trim(self) -> None:
        """Drop the least recently used made values over ``size`` (with the lock held); a
        value still being made stays, so that the callers waiting for it get it."""
        if self.size is None:
            return
        over = len(self._slots) - self.size
        if over <= 0:
            return
        made = [key for key, slot in self._slots.items() if slot.done.is_set()]
        for key in made[:over]:
            del self._slots[key]
