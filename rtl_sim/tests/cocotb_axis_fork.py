"""cocotb test of axis_fork (run by test_stream_plumbing.py; configuration in PLUMB_CFG).

One deque model per output: every input beat (tdata, tuser, tlast; samples of random length
1..40 beats, one tag per sample) must come out exactly once on each output, in order, whatever
the two independent tready patterns are; outputs must hold while stalled; with no gaps or
backpressure the fork moves one beat per cycle with a first- and last-beat latency of one cycle
(the header's timing).
"""

import json
import os
import random
from collections import deque

import cocotb
from axis_tb import Source, StallCheck, reset, start_clock
from cocotb.triggers import ReadOnly, RisingEdge


class Tb:
    def __init__(self, dut, cfg):
        self.dut = dut
        self.w, self.tag_w = cfg["W"], cfg["TAG_W"]
        self.rng = random.Random(cfg["seed"])
        self.src = Source(dut, self.rng, fields=("tdata", "tuser", "tlast"))
        self.outs = (StallCheck("m[0]"), StallCheck("m[1]"))
        self.models = (deque(), deque())
        self.cycle = 0
        self.tag = 0
        self.in_cycles, self.out_cycles = [], ([], [])
        self.checked = 0

    async def run(self, beats, gap_p, stall_p):
        """stall_p: a pair, the probability each output holds tready low in a cycle."""
        dut, rng = self.dut, self.rng
        todo, start = beats, self.cycle
        mask_w, mask_t = (1 << self.w) - 1, (1 << self.tag_w) - 1
        left = 0  # beats left in the current sample

        def next_beat():
            nonlocal todo, left
            if not todo:
                return None
            todo -= 1
            if not left:
                left = min(rng.randint(1, 40), todo + 1)
            left -= 1
            beat = (rng.getrandbits(self.w), self.tag, int(left == 0))
            if not left:
                self.tag = (self.tag + 1) & mask_t
            return beat

        while todo or self.src.busy or any(self.models):
            self.src.offer(next_beat, gap_p)
            ready = [int(rng.random() >= p) for p in stall_p]
            dut.m_tready.value = ready[0] | ready[1] << 1
            await ReadOnly()
            valid = int(dut.m_tvalid.value)
            data, user, last = int(dut.m_tdata.value), int(dut.m_tuser.value), int(dut.m_tlast.value)
            for i in range(2):
                beat = (data >> (i * self.w) & mask_w, user >> (i * self.tag_w) & mask_t, last >> i & 1)
                beat = self.outs[i].observe(bool(valid >> i & 1), beat, bool(ready[i]), self.cycle)
                if beat is not None:
                    assert self.models[i], f"cycle {self.cycle}: output {i} beat {beat} never input"
                    expect = self.models[i].popleft()
                    assert beat == expect, f"cycle {self.cycle}: output {i} got {beat}, expected {expect}"
                    self.out_cycles[i].append(self.cycle)
                    self.checked += 1
            beat = self.src.fired()
            if beat is not None:
                for model in self.models:
                    model.append(beat)
                self.in_cycles.append(self.cycle)
            await RisingEdge(dut.clk)
            self.cycle += 1
            assert self.cycle - start < 50 * (beats + 10), "timeout: beats stuck in the fork"
        self.src.idle()


@cocotb.test()
async def fork_stream(dut):
    cfg = json.loads(os.environ["PLUMB_CFG"])
    start_clock(dut)
    tb = Tb(dut, cfg)
    await reset(dut, ("s_tvalid", "s_tdata", "s_tuser", "s_tlast", "m_tready"))

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
