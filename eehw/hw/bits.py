"""The stream contract every Python model, driver and testbench of the project reads: how
elements sit in a beat or memory word (element i at bits [i*width +: width], two's complement,
as the Verilog library's ``tdata`` and ``.mem`` files hold them) and how results find their
samples by tag."""

from __future__ import annotations

import numpy as np


def pack(values, width: int) -> int:
    """One word: element i of ``values`` (flattened) at bits [i*width +: width]."""
    word, mask = 0, (1 << width) - 1
    for i, v in enumerate(np.asarray(values).ravel().tolist()):
        word |= (int(v) & mask) << (i * width)
    return word


def pack_rows(rows, width: int) -> list[int]:
    return [pack(row, width) for row in rows]


def unpack(word: int, n: int, width: int, signed: bool) -> np.ndarray:
    """Inverse of ``pack``: ``n`` elements of ``width`` bits, sign-extended when ``signed``."""
    word, mask = int(word), (1 << width) - 1
    vals = np.array([(word >> (i * width)) & mask for i in range(n)], dtype=np.int64)
    return vals - (vals >> (width - 1) & 1) * (1 << width) if signed else vals


def unpack_rows(words, n: int, width: int, signed: bool) -> np.ndarray:
    return np.array([unpack(w, n, width, signed) for w in words], dtype=np.int64).reshape(len(words), n)


class TagQueue:
    """Results back to their samples by tag. Tags count up modulo 2**width and every path keeps
    sample order, so a result carrying tag t belongs to the earliest sample with tag t that is
    not complete yet (the RTL simulation's decoder and the block harness's both read it so)."""

    def __init__(self, total: int, width: int) -> None:
        mask = (1 << width) - 1
        self._pending: dict[int, list[int]] = {}
        for i in range(total - 1, -1, -1):
            self._pending.setdefault(i & mask, []).append(i)

    def peek(self, tag: int) -> int | None:
        """The sample a result with ``tag`` belongs to, or None (no sample expects one: a duplicate)."""
        queue = self._pending.get(int(tag))
        return queue[-1] if queue else None

    def pop(self, tag: int) -> int | None:
        """As ``peek``, and that sample is complete."""
        queue = self._pending.get(int(tag))
        return queue.pop() if queue else None
