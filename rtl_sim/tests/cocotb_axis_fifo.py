"""cocotb test of axis_fifo (run by test_stream_plumbing.py; configuration in PLUMB_CFG).

Driver, monitor and a deque model in one loop: every output beat is checked against the
model (no loss, no duplication, order), outputs must hold while stalled, `count` must equal
the model's occupancy, capacity must be exactly DEPTH, and with no gaps or backpressure the
FIFO must move one beat per cycle with a latency of one cycle.
"""

import json
import os
import random
from collections import deque

import cocotb
from axis_tb import Sink, Source, reset, start_clock
from cocotb.triggers import ReadOnly, RisingEdge


class Tb:
    def __init__(self, dut, cfg):
        self.dut = dut
        self.w, self.tag_w, self.depth = cfg["W"], cfg["TAG_W"], cfg["DEPTH"]
        self.rng = random.Random(cfg["seed"])
        self.src, self.sink = Source(dut, self.rng), Sink(dut, self.rng)
        self.model = deque()
        self.cycle = 0
        self.tag = 0
        self.in_cycles, self.out_cycles = [], []
        self.checked = 0

    def new_beat(self):
        beat = (self.rng.getrandbits(self.w), self.tag)
        self.tag = (self.tag + 1) % (1 << self.tag_w)
        return beat

    async def run(self, beats, gap_p, stall_p, ready_fn=None, max_cycles=None):
        """Drive ``beats`` beats and drain; ready_fn(i) overrides the random tready."""
        dut = self.dut
        todo, start = beats, self.cycle
        max_cycles = max_cycles or 50 * (beats + 10)

        def next_beat():
            nonlocal todo
            if not todo:
                return None
            todo -= 1
            return self.new_beat()

        while todo or self.src.busy or self.model:
            self.src.offer(next_beat, gap_p)
            self.sink.ready(stall_p, ready_fn(self.cycle - start) if ready_fn else None)
            await ReadOnly()
            assert int(dut.count.value) == len(self.model), (
                f"cycle {self.cycle}: count {int(dut.count.value)} != {len(self.model)} held")
            beat = self.sink.take(self.cycle)
            if beat is not None:
                assert self.model, f"cycle {self.cycle}: output beat {beat} never input"
                expect = self.model.popleft()
                assert beat == expect, f"cycle {self.cycle}: got {beat}, expected {expect}"
                self.out_cycles.append(self.cycle)
                self.checked += 1
            beat = self.src.fired()
            if beat is not None:
                self.model.append(beat)
                self.in_cycles.append(self.cycle)
            await RisingEdge(dut.clk)
            self.cycle += 1
            assert self.cycle - start < max_cycles, "timeout: beats stuck in the FIFO"
        self.src.idle()


@cocotb.test()
async def fifo_stream(dut):
    cfg = json.loads(os.environ["PLUMB_CFG"])
    start_clock(dut)
    tb = Tb(dut, cfg)
    await reset(dut)

    # Full throughput and latency with no gaps and no backpressure.
    n = 200
    await tb.run(n, 0.0, 0.0)
    ins, outs = tb.in_cycles[-n:], tb.out_cycles[-n:]
    assert ins[-1] - ins[0] == n - 1, "input not accepted every cycle"
    assert outs[-1] - outs[0] == n - 1, "output not one beat per cycle"
    latencies = {o - i for i, o in zip(ins, outs)}
    assert latencies == {1}, f"latency {latencies}, expected 1 cycle"
    dut._log.info("throughput %d beats in %d cycles, latency 1", n, outs[-1] - ins[0] + 1)

    # Capacity: with the output stalled exactly DEPTH beats go in.
    before = len(tb.in_cycles)
    stall = 4 * cfg["DEPTH"] + 8
    await tb.run(cfg["DEPTH"] + 3, 0.0, 0.0, ready_fn=lambda c: c >= stall)
    accepted_while_stalled = sum(1 for c in tb.in_cycles[before:] if c - tb.in_cycles[before] < stall)
    assert accepted_while_stalled == cfg["DEPTH"], (
        f"{accepted_while_stalled} beats accepted with the output stalled, DEPTH={cfg['DEPTH']}")

    # Constrained-random gaps and backpressure.
    per_phase = cfg["beats"] // len(cfg["mixes"])
    for gap_p, stall_p in cfg["mixes"]:
        await tb.run(per_phase, gap_p, stall_p)
    assert not tb.model
    dut._log.info("checked %d output beats", tb.checked)
