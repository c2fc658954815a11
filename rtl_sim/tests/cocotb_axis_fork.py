"""cocotb test of axis_fork (run by test_stream_plumbing.py; configuration in PLUMB_CFG).

One deque model per output: every input beat must come out exactly once on each output, in
order, whatever the two independent tready patterns are; outputs must hold while stalled;
with no gaps or backpressure the fork moves one beat per cycle with a latency of one cycle.
"""

import json
import os
import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


class Tb:
    def __init__(self, dut, cfg):
        self.dut = dut
        self.w, self.tag_w = cfg["W"], cfg["TAG_W"]
        self.rng = random.Random(cfg["seed"])
        self.models = (deque(), deque())
        self.cycle = 0
        self.tag = 0
        self.in_cycles, self.out_cycles = [], ([], [])
        self.checked = 0
        self._held = [None, None]

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        dut.s_tvalid.value = 0
        dut.s_tdata.value = 0
        dut.s_tuser.value = 0
        dut.m_tready.value = 0
        for _ in range(3):
            await RisingEdge(dut.clk)
        dut.rst.value = 0

    async def run(self, beats, gap_p, stall_p):
        """stall_p: a pair, the probability each output holds tready low in a cycle."""
        dut, rng = self.dut, self.rng
        sent, pending, start = 0, None, self.cycle
        mask_w, mask_t = (1 << self.w) - 1, (1 << self.tag_w) - 1
        while sent < beats or pending is not None or any(self.models):
            if pending is None and sent < beats and rng.random() >= gap_p:
                pending = (rng.getrandbits(self.w), self.tag)
                self.tag = (self.tag + 1) & mask_t
            dut.s_tvalid.value = int(pending is not None)
            if pending is not None:
                dut.s_tdata.value, dut.s_tuser.value = pending
            ready = [int(rng.random() >= p) for p in stall_p]
            dut.m_tready.value = ready[0] | ready[1] << 1
            await ReadOnly()
            valid = int(dut.m_tvalid.value)
            data, user = int(dut.m_tdata.value), int(dut.m_tuser.value)
            for i in range(2):
                if valid >> i & 1:
                    beat = (data >> (i * self.w) & mask_w, user >> (i * self.tag_w) & mask_t)
                    if self._held[i] is not None:
                        assert beat == self._held[i], f"cycle {self.cycle}: output {i} changed while stalled"
                    if ready[i]:
                        assert self.models[i], f"cycle {self.cycle}: output {i} beat {beat} never input"
                        expect = self.models[i].popleft()
                        assert beat == expect, f"cycle {self.cycle}: output {i} got {beat}, expected {expect}"
                        self.out_cycles[i].append(self.cycle)
                        self.checked += 1
                        self._held[i] = None
                    else:
                        self._held[i] = beat
                else:
                    assert self._held[i] is None, f"cycle {self.cycle}: m_tvalid[{i}] dropped before handshake"
            if pending is not None and int(dut.s_tready.value):
                for model in self.models:
                    model.append(pending)
                self.in_cycles.append(self.cycle)
                pending, sent = None, sent + 1
            await RisingEdge(dut.clk)
            self.cycle += 1
            assert self.cycle - start < 50 * (beats + 10), "timeout: beats stuck in the fork"
        dut.s_tvalid.value = 0


@cocotb.test()
async def fork_stream(dut):
    cfg = json.loads(os.environ["PLUMB_CFG"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    tb = Tb(dut, cfg)
    await tb.reset()

    n = 200
    await tb.run(n, 0.0, (0.0, 0.0))
    ins = tb.in_cycles[-n:]
    assert ins[-1] - ins[0] == n - 1, "input not accepted every cycle"
    for i in range(2):
        outs = tb.out_cycles[i][-n:]
        assert outs[-1] - outs[0] == n - 1, f"output {i} not one beat per cycle"
        latencies = {o - c for c, o in zip(ins, outs)}
        assert latencies == {1}, f"output {i} latency {latencies}, expected 1 cycle"
    dut._log.info("throughput %d beats in %d cycles, latency 1", n, tb.out_cycles[0][-1] - ins[0] + 1)

    per_phase = cfg["beats"] // len(cfg["mixes"])
    for gap_p, stall0, stall1 in cfg["mixes"]:
        await tb.run(per_phase, gap_p, (stall0, stall1))
    dut._log.info("checked %d output beats (both outputs)", tb.checked)
