"""Shared pieces of the module testbenches (cocotb_*.py) and their pytest drivers: clock and
reset, element packing, and the per-cycle AXI-Stream rules every source and sink obeys.

The testbenches drive a cycle like this: set the inputs (Source.offer, Sink.ready), await
ReadOnly, read the settled handshakes (Source.fired, Sink.take), await the rising edge. So a
handshake seen in cycle c transfers on the edge that ends cycle c.
"""

from __future__ import annotations

from eehw.hw.bits import pack, pack_rows, unpack, unpack_rows  # noqa: F401  (the testbenches' packing)

CLOCK_NS = 10


def start_clock(dut) -> None:
    from cocotb.clock import Clock

    Clock(dut.clk, CLOCK_NS, unit="ns").start()


async def reset(dut, low=("s_tvalid", "s_tdata", "s_tuser", "m_tready"), cycles: int = 3) -> None:
    """Synchronous reset for ``cycles`` edges with the named inputs held at 0."""
    from cocotb.triggers import RisingEdge

    dut.rst.value = 1
    for name in low:
        getattr(dut, name).value = 0
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


class Source:
    """An AXI-Stream source with random valid gaps: a beat, once offered, stays on the bus
    until its handshake (AXI-Stream forbids withdrawing it)."""

    def __init__(self, dut, rng, prefix: str = "s", fields=("tdata", "tuser")):
        self.rng = rng
        self.valid = getattr(dut, f"{prefix}_tvalid")
        self.ready = getattr(dut, f"{prefix}_tready")
        self.fields = [getattr(dut, f"{prefix}_{f}") for f in fields]
        self.pending = None

    def offer(self, next_beat, gap_p: float) -> None:
        """Drive this cycle: the pending beat, or (with probability 1 - gap_p) the beat that
        ``next_beat()`` returns (None: nothing left to send)."""
        if self.pending is None and self.rng.random() >= gap_p:
            self.pending = next_beat()
        self.valid.value = int(self.pending is not None)
        if self.pending is not None:
            for handle, value in zip(self.fields, self.pending):
                handle.value = value

    def fired(self):
        """After ReadOnly: the beat that handshakes this cycle, or None."""
        if self.pending is not None and int(self.ready.value):
            beat, self.pending = self.pending, None
            return beat
        return None

    @property
    def busy(self) -> bool:
        return self.pending is not None

    def idle(self) -> None:
        self.valid.value = 0


class StallCheck:
    """The output rules under backpressure: a beat not taken stays on the bus unchanged, and
    tvalid does not drop before its handshake."""

    def __init__(self, name: str):
        self.name, self.held = name, None

    def observe(self, valid: bool, beat, ready: bool, cycle: int):
        """The beat taken this cycle, or None; asserts the rules."""
        if not valid:
            assert self.held is None, f"cycle {cycle}: {self.name} tvalid dropped before its handshake"
            return None
        if self.held is not None:
            assert beat == self.held, f"cycle {cycle}: {self.name} changed while stalled: {self.held} -> {beat}"
        self.held = None if ready else beat
        return beat if ready else None


class Sink:
    """An AXI-Stream sink with random tready backpressure, checked by StallCheck."""

    def __init__(self, dut, rng, prefix: str = "m", fields=("tdata", "tuser")):
        self.rng = rng
        self.valid = getattr(dut, f"{prefix}_tvalid")
        self.tready = getattr(dut, f"{prefix}_tready")
        self.fields = [getattr(dut, f"{prefix}_{f}") for f in fields]
        self.check = StallCheck(f"{prefix}_*")
        self._ready = False

    def ready(self, stall_p: float, value: bool | None = None) -> bool:
        """Drive tready this cycle: low with probability stall_p (or ``value`` if given)."""
        self._ready = (self.rng.random() >= stall_p) if value is None else bool(value)
        self.tready.value = int(self._ready)
        return self._ready

    def take(self, cycle: int):
        """After ReadOnly: the beat (tuple of the fields) taken this cycle, or None."""
        valid = bool(int(self.valid.value))
        beat = tuple(int(f.value) for f in self.fields) if valid else None
        return self.check.observe(valid, beat, self._ready, cycle)
