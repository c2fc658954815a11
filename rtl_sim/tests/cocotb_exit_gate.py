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
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from eehw.rtl_sim.models.exit_gate import ExitGateModel


class Tb:
    def __init__(self, dut, cfg):
        self.dut = dut
        self.feat_w, self.dec_w, self.tag_w = cfg["FEAT_W"], cfg["DEC_W"], cfg["TAG_W"]
        self.rng = random.Random(cfg["seed"])
        self.model = ExitGateModel()
        self.cycle = 0
        self.tag = 0
        self.checked = 0
        self.n_exits = 0
        self.log = {"feat_in": [], "dec_in": [], "feat_out": [], "res_out": []}
        self._held = {"feat": None, "res": None}

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        for name in ("s_feat", "s_dec"):
            getattr(dut, f"{name}_tvalid").value = 0
            getattr(dut, f"{name}_tdata").value = 0
            getattr(dut, f"{name}_tuser").value = 0
        dut.m_feat_tready.value = 0
        dut.m_res_tready.value = 0
        for _ in range(3):
            await RisingEdge(dut.clk)
        dut.rst.value = 0

    def samples(self, n, exit_p):
        mask_t = (1 << self.tag_w) - 1
        feats, decs = [], []
        for _ in range(n):
            decision = (self.rng.getrandbits(self.dec_w - 1) << 1) | int(self.rng.random() < exit_p)
            feats.append((self.rng.getrandbits(self.feat_w), self.tag))
            decs.append((decision, self.tag))
            self.tag = (self.tag + 1) & mask_t
        return feats, decs

    def _sink(self, name, ready, expected):
        dut = self.dut
        if int(getattr(dut, f"m_{name}_tvalid").value):
            beat = (int(getattr(dut, f"m_{name}_tdata").value), int(getattr(dut, f"m_{name}_tuser").value))
            if self._held[name] is not None:
                assert beat == self._held[name], f"cycle {self.cycle}: m_{name} changed while stalled"
            if ready:
                assert expected, f"cycle {self.cycle}: m_{name} beat {beat} not expected (duplicate or invented)"
                expect = expected.popleft()
                assert beat == expect, f"cycle {self.cycle}: m_{name} got {beat}, expected {expect}"
                self.log[f"{name}_out"].append((self.cycle, beat[1]))
                self.checked += 1
                self._held[name] = None
            else:
                self._held[name] = beat
        else:
            assert self._held[name] is None, f"cycle {self.cycle}: m_{name}_tvalid dropped before handshake"

    async def run(self, n, exit_p, gap_feat, gap_dec, stall_feat, stall_res, samples=None):
        dut, rng, model = self.dut, self.rng, self.model
        feats, decs = samples or self.samples(n, exit_p)
        self.n_exits += sum(d & 1 for d, _ in decs)
        fi = di = 0
        f_pend = d_pend = None
        start = self.cycle
        while fi < len(feats) or di < len(decs) or f_pend or d_pend or model.feat_out or model.res_out:
            if f_pend is None and fi < len(feats) and rng.random() >= gap_feat:
                f_pend, fi = feats[fi], fi + 1
            if d_pend is None and di < len(decs) and rng.random() >= gap_dec:
                d_pend, di = decs[di], di + 1
            dut.s_feat_tvalid.value = int(f_pend is not None)
            if f_pend is not None:
                dut.s_feat_tdata.value, dut.s_feat_tuser.value = f_pend
            dut.s_dec_tvalid.value = int(d_pend is not None)
            if d_pend is not None:
                dut.s_dec_tdata.value, dut.s_dec_tuser.value = d_pend
            ready_feat = rng.random() >= stall_feat
            ready_res = rng.random() >= stall_res
            dut.m_feat_tready.value = int(ready_feat)
            dut.m_res_tready.value = int(ready_res)
            await ReadOnly()
            assert int(dut.error.value) == 0, f"cycle {self.cycle}: error raised (tag mismatch)"
            self._sink("feat", ready_feat, model.feat_out)
            self._sink("res", ready_res, model.res_out)
            if f_pend is not None and int(dut.s_feat_tready.value):
                model.push_feature(*f_pend)
                self.log["feat_in"].append((self.cycle, f_pend[1]))
                f_pend = None
            if d_pend is not None and int(dut.s_dec_tready.value):
                model.push_decision(*d_pend)
                self.log["dec_in"].append((self.cycle, d_pend[1]))
                d_pend = None
            await RisingEdge(dut.clk)
            self.cycle += 1
            assert self.cycle - start < 50 * (len(feats) + 10), "timeout: samples stuck in the gate"
        dut.s_feat_tvalid.value = 0
        dut.s_dec_tvalid.value = 0
        assert model.pending == 0 and model.tag_mismatches == 0


@cocotb.test()
async def gate_stream(dut):
    cfg = json.loads(os.environ["PLUMB_CFG"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    tb = Tb(dut, cfg)
    await tb.reset()

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
