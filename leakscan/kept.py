"""What a pass keeps at hand from one blob to the next (earlier versions of a file, archive
members decoded before): the latest entries within a byte budget, the oldest dropped first."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Kept(Generic[K, V]):
    def __init__(self, max_bytes: int, max_items: int | None = None) -> None:
        self.max_bytes, self.max_items = max_bytes, max_items
        self._items: dict[K, tuple[V, int]] = {}
        self._bytes = 0

    def get(self, key: K) -> V | None:
        got = self._items.get(key)
        return got[0] if got else None

    def put(self, key: K, value: V, size: int) -> None:
        """Keep `value` (counting `size` bytes) unless `key` is kept already."""
        if key in self._items:
            return
        self._items[key] = (value, size)
        self._bytes += size
        while self._bytes > self.max_bytes or (self.max_items is not None and len(self._items) > self.max_items):
            self._bytes -= self._items.pop(next(iter(self._items)))[1]

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
