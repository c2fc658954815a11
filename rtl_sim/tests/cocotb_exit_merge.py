"""cocotb test of exit_merge (run by test_stream_plumbing.py; configuration in PLUMB_CFG).

K sources with independent random gaps, random output backpressure. Every output beat is
checked against rtl_sim/models/exit_merge.py (per-port order, packing, no loss, no
duplication); every grant is checked against the model's round-robin arbiter, and no waiting
port may be passed over more than K-1 times. With all ports valid and no backpressure the
merge must move one beat per cycle, rotating over the ports, with a latency of one cycle.
"""

import json
import os
import random

import cocotb
from axis_tb import StallCheck, reset, start_clock
from cocotb.triggers import ReadOnly, RisingEdge

from eehw.rtl_sim.models.exit_merge import ExitMergeModel


class Tb:
    def __init__(self, dut, cfg):
        self.dut = dut
        self.k, self.dec_w, self.tag_w = cfg["K"], cfg["DEC_W"], cfg["TAG_W"]
        self.rng = random.Random(cfg["seed"])
        self.model = ExitMergeModel(self.k)
        self.cycle = 0
        self.tags = [0] * self.k
        self.checked = 0
        self.in_log, self.out_log = [], []  # (cycle, port)
        self.max_passed = 0
        self.out = StallCheck("m")

    async def run(self, beats, gap_p, stall_p):
        """beats per port; gap_p: one probability or one per port."""
        dut, rng, k = self.dut, self.rng, self.k
        gaps = gap_p if isinstance(gap_p, list) else [gap_p] * k
        mask_d, mask_t = (1 << self.dec_w) - 1, (1 << self.tag_w) - 1
        sent, pending = [0] * k, [None] * k
        passed = [0] * k  # grants to other ports while this one waited
        start = self.cycle
        while any(s < beats for s in sent) or any(p is not None for p in pending) or self.model.pending:
            data = user = valid = 0
            for i in range(k):
                if pending[i] is None and sent[i] < beats and rng.random() >= gaps[i]:
                    pending[i] = (rng.getrandbits(self.dec_w), self.tags[i])
                    self.tags[i] = (self.tags[i] + 1) & mask_t
                if pending[i] is not None:
                    valid |= 1 << i
                    data |= pending[i][0] << (i * self.dec_w)
                    user |= pending[i][1] << (i * self.tag_w)
            dut.s_tvalid.value = valid
            dut.s_tdata.value = data
            dut.s_tuser.value = user
            ready = rng.random() >= stall_p
            dut.m_tready.value = int(ready)
            await ReadOnly()
            valid_out = bool(int(dut.m_tvalid.value))
            beat = (int(dut.m_tdata.value), int(dut.m_tuser.value)) if valid_out else None
            beat = self.out.observe(valid_out, beat, ready, self.cycle)
            if beat is not None:
                index = beat[0] & ((1 << max(1, (k - 1).bit_length())) - 1)
                expect = self.model.expect(index)
                assert beat == expect, f"cycle {self.cycle}: got {beat}, expected {expect}"
                self.out_log.append((self.cycle, index))
                self.checked += 1
            s_ready = int(dut.s_tready.value)
            assert s_ready & ~valid == 0, f"cycle {self.cycle}: s_tready {s_ready:b} on an idle port"
            fired = s_ready & valid
            if fired:
                assert fired & (fired - 1) == 0, f"cycle {self.cycle}: two ports granted ({fired:b})"
                port = fired.bit_length() - 1
                granted = self.model.arbitrate(valid)
                assert port == granted, f"cycle {self.cycle}: port {port} granted, round robin says {granted}"
                for i in range(k):
                    if i != port and valid >> i & 1:
                        passed[i] += 1
                        self.max_passed = max(self.max_passed, passed[i])
                        assert passed[i] <= k - 1, f"port {i} passed over {passed[i]} times"
                passed[port] = 0
                self.model.push(port, *pending[port])
                self.in_log.append((self.cycle, port))
                pending[port], sent[port] = None, sent[port] + 1
            await RisingEdge(dut.clk)
            self.cycle += 1
            assert self.cycle - start < 50 * (k * beats + 10), "timeout: beats stuck in the merge"
        dut.s_tvalid.value = 0
        assert mask_d  # widths used


@cocotb.test()
async def merge_stream(dut):
    cfg = json.loads(os.environ["PLUMB_CFG"])
    k = cfg["K"]
    start_clock(dut)
    tb = Tb(dut, cfg)
    await reset(dut)

    # All ports always valid, no backpressure: one beat per cycle, rotating, latency 1.
    n = 60
    await tb.run(n, 0.0, 0.0)
    ins, outs = tb.in_log[-n * k :], tb.out_log[-n * k :]
    assert ins[-1][0] - ins[0][0] == n * k - 1, "input not accepted every cycle"
    assert outs[-1][0] - outs[0][0] == n * k - 1, "output not one beat per cycle"
    assert {o[0] - i[0] for i, o in zip(ins, outs)} == {1}, "latency is not 1 cycle"
    assert [p for _, p in ins[:k]] == list(range(k)), "not round robin"
    dut._log.info("throughput %d beats in %d cycles, latency 1", n * k, outs[-1][0] - ins[0][0] + 1)

    # Constrained random: uneven per-port gaps and backpressure.
    per_phase = cfg["beats"] // (k * len(cfg["mixes"]))
    for gap_p, stall_p in cfg["mixes"]:
        gaps = [gap_p if i % 2 == 0 else gap_p / 3 for i in range(k)]
        await tb.run(per_phase, gaps, stall_p)
    dut._log.info("checked %d output beats; a waiting port was passed over at most %d times", tb.checked, tb.max_passed)
