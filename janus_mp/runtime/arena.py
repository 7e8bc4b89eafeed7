"""Per-worker shared cells (a heartbeat, a cancellation byte) cut from a few large shared arrays.

One ``RawValue`` per cell would cost a heap block, its bookkeeping and a finalizer each (about
1.3 KiB of supervisor memory per cell, measured with tracemalloc), and one more object graph to
copy at every fork. Cells come instead from chunks of ``CHUNK`` slots of one shared array each;
a freed cell is reset and reused. A cell pickles as (its chunk, its index), so a spawn or
forkserver worker reaches the same shared memory (multiprocess sends the chunk's arena once).

A cell is freed only once nothing can write it any more: a worker's after it was reaped, a
cancellation node's when it is detached (see :class:`janus_mp.runtime.shared_event.SharedEvent`).
"""

from __future__ import annotations

from typing import Any

import multiprocess

#: Cells per shared array: 1,024 workers' heartbeats are one 8 KiB mapping.
CHUNK = 1024


class Cell:
    """One slot of a shared array, read and written through ``value``."""

    __slots__ = ("_array", "_index")

    def __init__(self, array: Any, index: int) -> None:
        self._array = array
        self._index = index

    @property
    def value(self) -> Any:
        return self._array[self._index]

    @value.setter
    def value(self, value: Any) -> None:
        self._array[self._index] = value

    def __getstate__(self) -> tuple[Any, int]:
        return self._array, self._index

    def __setstate__(self, state: tuple[Any, int]) -> None:
        self._array, self._index = state


class Arena:
    """Cells of one C type (``"d"`` double, ``"B"`` byte), in chunks made as needed."""

    def __init__(self, typecode: str, context: Any = None) -> None:
        self._typecode = typecode
        self._context = context if context is not None else multiprocess.get_context()
        self._free: list[Cell] = []  # given back, reused first
        self._chunk: Any = None  # the newest array, cut from the front
        self._cut = CHUNK
        self.chunks = 0

    def take(self, initial: Any = 0) -> Cell:
        if self._free:
            cell = self._free.pop()
        else:
            if self._cut == CHUNK:
                self._chunk = self._context.RawArray(self._typecode, CHUNK)
                self._cut = 0
                self.chunks += 1
            cell = Cell(self._chunk, self._cut)
            self._cut += 1
        cell.value = initial
        return cell

    def give_back(self, cell: Cell) -> None:
        self._free.append(cell)
