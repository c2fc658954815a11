"""cocotb test of axis_fifo (run by test_stream_plumbing.py; configuration in PLUMB_CFG).

Driver, monitor and a deque model in one loop. The stream is made of samples of random length
(1..MAX_LEN beats, tlast on the last, one tag per sample on every beat). Every output beat
(tdata, tuser, tlast) is checked against the model (no loss, no duplication, order), outputs
must hold while stalled, `count` must equal the model's occupancy, capacity must be exactly
DEPTH and a full FIFO must drain at one beat per cycle; with no gaps or backpressure the FIFO
must move one beat per cycle with a first- and last-beat latency of one cycle (the header's
timing) and L cycles per L-beat sample.
"""

import json
import os
import random
from collections import deque

import cocotb
from axis_tb import Sink, Source, reset, start_clock
from cocotb.triggers import ReadOnly, RisingEdge

FIELDS = ("tdata", "tuser", "tlast")
LOW = ("s_tvalid", "s_tdata", "s_tuser", "s_tlast", "m_tready")


class Tb:
    def __init__(self, dut, cfg):
        self.dut = dut
        self.w, self.tag_w, self.depth = cfg["W"], cfg["TAG_W"], cfg["DEPTH"]
        self.max_len = cfg.get("max_len", 40)
        self.rng = random.Random(cfg["seed"])
        self.src = Source(dut, self.rng, fields=FIELDS)
        self.sink = Sink(dut, self.rng, fields=FIELDS)
        self.model = deque()
        self.cycle = 0
        self.tag = 0
        self.in_log, self.out_log = [], []  # (cycle, beat)
        self.checked = 0

    def stream(self, beats, lengths=None):
        """Beats of whole samples, at least ``beats`` of them (lengths: fixed sample lengths)."""
        out = []
        lengths = iter(lengths) if lengths else None
        while len(out) < beats:
            n = next(lengths) if lengths else self.rng.randint(1, self.max_len)
            out += [(self.rng.getrandbits(self.w), self.tag, int(i == n - 1)) for i in range(n)]
            self.tag = (self.tag + 1) % (1 << self.tag_w)
        return out

    async def run(self, beats, gap_p, stall_p, ready_fn=None, max_cycles=None):
        """Drive ``beats`` (a list) and drain; ready_fn(i) overrides the random tready."""
        dut = self.dut
        todo, start = iter(beats), self.cycle
        max_cycles = max_cycles or 50 * (len(beats) + 10)
        sent = 0

        while sent < len(beats) or self.src.busy or self.model:
            self.src.offer(lambda: next(todo, None), gap_p)
            self.sink.ready(stall_p, ready_fn(self.cycle - start) if ready_fn else None)
            await ReadOnly()
            assert int(dut.count.value) == len(self.model), (
                f"cycle {self.cycle}: count {int(dut.count.value)} != {len(self.model)} held"
            )
            beat = self.sink.take(self.cycle)
            if beat is not None:
                assert self.model, f"cycle {self.cycle}: output beat {beat} never input"
                expect = self.model.popleft()
                assert beat == expect, f"cycle {self.cycle}: got {beat}, expected {expect}"
                self.out_log.append((self.cycle, beat))
                self.checked += 1
            beat = self.src.fired()
            if beat is not None:
                self.model.append(beat)
                self.in_log.append((self.cycle, beat))
                sent += 1
            await RisingEdge(dut.clk)
            self.cycle += 1
            assert self.cycle - start < max_cycles, "timeout: beats stuck in the FIFO"
        self.src.idle()


@cocotb.test()
async def fifo_stream(dut):
    cfg = json.loads(os.environ["PLUMB_CFG"])
    start_clock(dut)
    tb = Tb(dut, cfg)
    await reset(dut, LOW)

    # Timing with no gaps and no backpressure (the header: latency 1, one beat per cycle).
    lengths = [1, 2, 40, 7, 1, 1, 13, 3, 30, 5]
    beats = tb.stream(sum(lengths), lengths)
    n = len(beats)
    i0, o0 = len(tb.in_log), len(tb.out_log)
    await tb.run(beats, 0.0, 0.0)
    ins = [c for c, _ in tb.in_log[i0:]]
    outs = [c for c, _ in tb.out_log[o0:]]
    assert ins[-1] - ins[0] == n - 1, "input not accepted every cycle"
    assert outs[-1] - outs[0] == n - 1, "output not one beat per cycle"
    latencies = {o - i for i, o in zip(ins, outs)}
    assert latencies == {1}, f"latency {latencies}, expected 1 cycle (first and last beat of every sample)"
    firsts = [0] + [k + 1 for k, (_, b) in enumerate(tb.out_log[o0:-1]) if b[2]]
    spacing = [outs[b] - outs[a] for a, b in zip(firsts, firsts[1:])]
    assert spacing == lengths[:-1], f"cycles per sample {spacing}, expected the lengths {lengths[:-1]}"
    dut._log.info("timing: %d beats in %d cycles, latency 1, L cycles per sample", n, outs[-1] - ins[0] + 1)

    # Capacity: with the output stalled exactly DEPTH beats go in; then the FIFO drains at one
    # beat per cycle while the input keeps coming.
    before, out_before = len(tb.in_log), len(tb.out_log)
    stall = 4 * cfg["DEPTH"] + 8
    await tb.run(tb.stream(cfg["DEPTH"] + 3), 0.0, 0.0, ready_fn=lambda c: c >= stall)
    first_in = tb.in_log[before][0]
    accepted_while_stalled = sum(1 for c, _ in tb.in_log[before:] if c - first_in < stall)
    assert accepted_while_stalled == cfg["DEPTH"], (
        f"{accepted_while_stalled} beats accepted with the output stalled, DEPTH={cfg['DEPTH']}"
    )
    outs = [c for c, _ in tb.out_log[out_before:]]
    assert outs[-1] - outs[0] == len(outs) - 1, f"a full FIFO did not drain at one beat per cycle: {outs}"

    # Constrained-random gaps and backpressure.
    per_phase = cfg["beats"] // len(cfg["mixes"])
    for gap_p, stall_p in cfg["mixes"]:
        await tb.run(tb.stream(per_phase), gap_p, stall_p)
    assert not tb.model
    dut._log.info("checked %d output beats", tb.checked)
