"""cocotb test of exit_gate (run by test_stream_plumbing.py; configuration in PLUMB_CFG).

Features and decisions for the same samples are driven on two independent sources with random
gaps (so decisions arrive before, with or long after their features); m_feat and m_res have
independent random backpressure. Every output beat is checked in order against
rtl_sim/models/exit_gate.py; `error` must stay low; outputs must hold while stalled. Then the
latency (1 cycle) and throughput (1 pair per cycle) are measured, and a directed tag mismatch
must raise `error`.
"""

import json
import os
import random

import cocotb
from axis_tb import Sink, Source, reset, start_clock
from cocotb.triggers import ReadOnly, RisingEdge
from eehw.rtl_sim.models.exit_gate import ExitGateModel

PORTS = ("s_feat_tvalid", "s_feat_tdata", "s_feat_tuser", "s_dec_tvalid", "s_dec_tdata", "s_dec_tuser",
         "m_feat_tready", "m_res_tready")


class Tb:
    def __init__(self, dut, cfg):
        self.dut = dut
        self.feat_w, self.dec_w, self.tag_w = cfg["FEAT_W"], cfg["DEC_W"], cfg["TAG_W"]
        self.rng = random.Random(cfg["seed"])
        self.src = {name: Source(dut, self.rng, prefix=f"s_{name}") for name in ("feat", "dec")}
        self.sink = {name: Sink(dut, self.rng, prefix=f"m_{name}") for name in ("feat", "res")}
        self.model = ExitGateModel()
        self.cycle = 0
        self.tag = 0
        self.checked = 0
        self.n_exits = 0
        self.log = {"feat_in": [], "dec_in": [], "feat_out": [], "res_out": []}

    def samples(self, n, exit_p):
        mask_t = (1 << self.tag_w) - 1
        feats, decs = [], []
        for _ in range(n):
            decision = (self.rng.getrandbits(self.dec_w - 1) << 1) | int(self.rng.random() < exit_p)
            feats.append((self.rng.getrandbits(self.feat_w), self.tag))
            decs.append((decision, self.tag))
            self.tag = (self.tag + 1) & mask_t
        return feats, decs

    def _sink(self, name, expected):
        beat = self.sink[name].take(self.cycle)
        if beat is not None:
            assert expected, f"cycle {self.cycle}: m_{name} beat {beat} not expected (duplicate or invented)"
            expect = expected.popleft()
            assert beat == expect, f"cycle {self.cycle}: m_{name} got {beat}, expected {expect}"
            self.log[f"{name}_out"].append((self.cycle, beat[1]))
            self.checked += 1

    async def run(self, n, exit_p, gap_feat, gap_dec, stall_feat, stall_res, samples=None):
        dut, model = self.dut, self.model
        feats, decs = samples or self.samples(n, exit_p)
        self.n_exits += sum(d & 1 for d, _ in decs)
        left = {"feat": iter(feats), "dec": iter(decs)}
        done = {"feat": 0, "dec": 0}
        start = self.cycle
        while done["feat"] < len(feats) or done["dec"] < len(decs) or model.feat_out or model.res_out:
            self.src["feat"].offer(lambda: next(left["feat"], None), gap_feat)
            self.src["dec"].offer(lambda: next(left["dec"], None), gap_dec)
            self.sink["feat"].ready(stall_feat)
            self.sink["res"].ready(stall_res)
            await ReadOnly()
            assert int(dut.error.value) == 0, f"cycle {self.cycle}: error raised (tag mismatch)"
            self._sink("feat", model.feat_out)
            self._sink("res", model.res_out)
            for name, push in (("feat", model.push_feature), ("dec", model.push_decision)):
                beat = self.src[name].fired()
                if beat is not None:
                    push(*beat)
                    self.log[f"{name}_in"].append((self.cycle, beat[1]))
                    done[name] += 1
            await RisingEdge(dut.clk)
            self.cycle += 1
            assert self.cycle - start < 50 * (len(feats) + 10), "timeout: samples stuck in the gate"
        self.src["feat"].idle()
        self.src["dec"].idle()
        assert model.pending == 0 and model.tag_mismatches == 0


@cocotb.test()
async def gate_stream(dut):
    cfg = json.loads(os.environ["PLUMB_CFG"])
    start_clock(dut)
    tb = Tb(dut, cfg)
    await reset(dut, PORTS)

    # Latency and throughput: both streams back to back, no backpressure; half the samples exit.
    n = min(200, 1 << (cfg["TAG_W"] - 1))  # tags identify samples here: no wrap-around
    first = tb.cycle
    await tb.run(n, 0.5, 0.0, 0.0, 0.0, 0.0)
    ins = {}  # tag -> cycle of the later of its two input handshakes
    for c, tag in tb.log["feat_in"] + tb.log["dec_in"]:
        if c >= first:
            ins[tag] = max(c, ins.get(tag, c))
    outs = sorted(tb.log["feat_out"] + tb.log["res_out"])
    assert len(outs) == n and outs[-1][0] - outs[0][0] == n - 1, "not one sample per cycle"
    latencies = {c - ins[tag] for c, tag in outs}
    assert latencies == {1}, f"latency {latencies}, expected 1 cycle"
    dut._log.info("throughput %d samples in %d cycles, latency 1", n, outs[-1][0] - first + 1)

    # Decisions long after their features (feature FIFO fills), and long before them.
    await tb.run(300, 0.5, 0.0, 0.8, 0.2, 0.2)
    await tb.run(300, 0.5, 0.8, 0.0, 0.2, 0.2)
    # Constrained random: exit rate, gaps and backpressure per phase.
    per_phase = cfg["beats"] // len(cfg["mixes"])
    for exit_p, gf, gd, sf, sr in cfg["mixes"]:
        await tb.run(per_phase, exit_p, gf, gd, sf, sr)
    dut._log.info("checked %d output beats, %d exits", tb.checked, tb.n_exits)

    # A pair with different tags must raise `error` (and keep it).
    dut.s_feat_tvalid.value, dut.s_feat_tdata.value, dut.s_feat_tuser.value = 1, 0, 1
    dut.s_dec_tvalid.value, dut.s_dec_tdata.value, dut.s_dec_tuser.value = 1, 1, 2
    dut.m_res_tready.value = 1
    await RisingEdge(dut.clk)
    dut.s_feat_tvalid.value = 0
    dut.s_dec_tvalid.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    await ReadOnly()
    assert int(dut.error.value) == 1, "tag mismatch did not raise error"
