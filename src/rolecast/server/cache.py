"""A bounded cache of things slow to load (a character's index, a backend model, a TTS voice).

At most ``size`` entries, the least recently used dropped first (requests still holding one
keep it until they finish). Each key is loaded once, by the first request that wants it, in
that request's thread: the cache's lock is held only to look a key up, never while loading,
so a slow load holds up only the requests waiting for the same key. A load that fails is not
kept, and the next request for the key tries again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class _Slot(Generic[V]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: V | None = None
        self.error: BaseException | None = None


class BoundedCache(Generic[V]):
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a cache holds at least one entry")
        self.size = size
        self._slots: OrderedDict[Hashable, _Slot[V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        """The value for ``key``, made with ``load()`` by the first caller that needs it."""
        with self._lock:
            slot = self._slots.get(key)
            mine = slot is None
            if slot is None:
                slot = self._slots[key] = _Slot()
                self._trim()
            else:
                self._slots.move_to_end(key)
        if mine:
            try:
                value = slot.value = load()
            except BaseException as exc:
                slot.error = exc
                with self._lock:
                    if self._slots.get(key) is slot:
                        del self._slots[key]
                raise
            finally:
                slot.done.set()
            return value
        slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.value  # type: ignore[return-value]

    def __setitem__(self, key: Hashable, value: V) -> None:
        """Put a value in as if loaded (a test's scripted backend)."""
        slot: _Slot[V] = _Slot()
        slot.value = value
        slot.done.set()
        with self._lock:
            self._slots[key] = slot
            self._slots.move_to_end(key)
            self._trim()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._slots

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._slots)

    def _trim(self) -> None:
        """Drop the least recently used loaded entries over ``size`` (with the lock held); an
        entry still loading stays, so that its waiters get it."""
        over = len(self._slots) - self.size
        for key in [k for k, s in self._slots.items() if s.done.is_set()][: max(over, 0)]:
            del self._slots[key]
