"""Reference model of rtl_sim/hdl/exit_merge.v: K result streams onto one, round robin.

Output packing (IDX_W = max(1, ceil(log2(K))), DEC_W-bit decisions with the exit flag at bit 0):
    m_tdata = (decision >> 1) << IDX_W | exit_index      (DEC_W - 1 + IDX_W bits)
    m_tuser = tag
Arbitration: the first valid port at or after the round-robin pointer (cyclically) wins; after
a grant to port i the pointer moves to i + 1 (mod K).
"""

from collections import deque


def idx_width(k: int) -> int:
    return max(1, (k - 1).bit_length())


def out_width(k: int, dec_w: int) -> int:
    return dec_w - 1 + idx_width(k)


def pack(decision: int, index: int, k: int) -> int:
    return ((decision >> 1) << idx_width(k)) | index


def unpack(word: int, k: int) -> tuple[int, int]:
    """m_tdata -> (decision without its exit bit, exit index)."""
    w = idx_width(k)
    return word >> w, word & ((1 << w) - 1)


class ExitMergeModel:
    """Per-port queues (order within a port is kept) plus the round-robin arbiter."""

    def __init__(self, k: int):
        if not 1 <= k <= 8:
            raise ValueError(f"K must be 1..8, not {k}")
        self.k = k
        self.queues = [deque() for _ in range(k)]  # accepted, not yet output: (decision, tag)
        self.rr = 0

    def push(self, port: int, decision: int, tag: int) -> None:
        self.queues[port].append((decision, tag))

    def expect(self, index: int) -> tuple[int, int]:
        """Pop the next output expected from port ``index``: (m_tdata, m_tuser)."""
        if not 0 <= index < self.k:
            raise AssertionError(f"exit index {index} out of range for K={self.k}")
        if not self.queues[index]:
            raise AssertionError(f"output from port {index} that was never input (duplicate or invented)")
        decision, tag = self.queues[index].popleft()
        return pack(decision, index, self.k), tag

    def arbitrate(self, valid_mask: int) -> int | None:
        """Port granted among the valid ones, advancing the pointer; None if none is valid."""
        for i in range(self.k):
            port = (self.rr + i) % self.k
            if valid_mask >> port & 1:
                self.rr = (port + 1) % self.k
                return port
        return None

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self.queues)
