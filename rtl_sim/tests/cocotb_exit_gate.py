"""cocotb test of exit_gate (run by test_stream_plumbing.py; configuration in PLUMB_CFG).

Samples are streams of 1..MAX_LEN feature beats (tlast on the last, the sample's tag on every
beat) with one decision each. Features and decisions are driven on two independent sources
with random gaps (so decisions arrive before, with or long after their features); m_feat and
m_res have independent random backpressure; in the "causal" phases a decision is offered only
some cycles after its sample's tlast beat went in, as a real exit head does (there the sample
lengths are at most DEPTH: the header's deadlock-freedom rule). Every output beat (data, tag,
tlast; decision, tag) is checked in order against rtl_sim/models/exit_gate.py (no loss, no
duplication, drops), `error` must stay low, outputs must hold while stalled. The header's
timing is measured on an idle gate (decision -> first/last m_feat beat, decision -> m_res) and
back to back (cut-through, one beat per cycle, L cycles per sample); wrong tags on one beat of
a forwarded and of a dropped sample must raise the sticky `error`.
"""

import json
import os
import random

import cocotb
from axis_tb import Sink, Source, reset, start_clock
from cocotb.triggers import ReadOnly, RisingEdge

from eehw.rtl_sim.models.exit_gate import ExitGateModel

PORTS = (
    "s_feat_tvalid",
    "s_feat_tdata",
    "s_feat_tuser",
    "s_feat_tlast",
    "s_dec_tvalid",
    "s_dec_tdata",
    "s_dec_tuser",
    "m_feat_tready",
    "m_res_tready",
)
FEAT = ("tdata", "tuser", "tlast")
DEC = ("tdata", "tuser")


class Tb:
    def __init__(self, dut, cfg):
        self.dut = dut
        self.feat_w, self.dec_w, self.tag_w = cfg["FEAT_W"], cfg["DEC_W"], cfg["TAG_W"]
        self.depth = cfg["DEPTH"]
        self.max_len = cfg.get("max_len", 40)
        self.rng = random.Random(cfg["seed"])
        self.src = {
            "feat": Source(dut, self.rng, prefix="s_feat", fields=FEAT),
            "dec": Source(dut, self.rng, prefix="s_dec", fields=DEC),
        }
        self.sink = {
            "feat": Sink(dut, self.rng, prefix="m_feat", fields=FEAT),
            "res": Sink(dut, self.rng, prefix="m_res", fields=DEC),
        }
        self.model = ExitGateModel()
        self.cycle = 0
        self.tag = 0
        self.checked = 0
        self.n_exits = 0
        self.n_beats = 0
        self.log = {}

    def samples(self, beats, exit_p, max_len=None, lengths=None, exits=None):
        """Whole samples with at least ``beats`` feature beats: (feature beats, decisions, lengths)."""
        mask_t = (1 << self.tag_w) - 1
        max_len = max_len or self.max_len
        feats, decs, lens = [], [], []
        k = 0
        while (len(feats) < beats) if lengths is None else (k < len(lengths)):
            n = lengths[k] if lengths is not None else self.rng.randint(1, max_len)
            ex = exits[k] if exits is not None else int(self.rng.random() < exit_p)
            decs.append(((self.rng.getrandbits(self.dec_w - 1) << 1) | ex, self.tag))
            feats += [(self.rng.getrandbits(self.feat_w), self.tag, int(i == n - 1)) for i in range(n)]
            lens.append(n)
            self.tag = (self.tag + 1) & mask_t
            k += 1
        return feats, decs, lens

    def _sink(self, name, expected):
        beat = self.sink[name].take(self.cycle)
        if beat is not None:
            assert expected, f"cycle {self.cycle}: m_{name} beat {beat} not expected (duplicate or invented)"
            expect = expected.popleft()
            assert beat == expect, f"cycle {self.cycle}: m_{name} got {beat}, expected {expect}"
            self.log[f"{name}_out"].append((self.cycle, beat))
            self.checked += 1

    async def run(self, samples, gap_feat, gap_dec, stall_feat, stall_res, hold=None, expect_error=False):
        """Drive (feats, decs, lens) and drain. hold(k, tb) -> True keeps decision k back this cycle."""
        dut, model = self.dut, self.model
        feats, decs, lens = samples
        self.n_exits += sum(d & 1 for d, _ in decs)
        self.n_beats += len(feats)
        it = {"feat": iter(feats), "dec": iter(decs)}
        done = {"feat": 0, "dec": 0}
        self.log = {"feat_in": [], "dec_in": [], "feat_out": [], "res_out": [], "tlast_in": []}
        start = self.cycle

        def next_dec():
            if hold is not None and done["dec"] < len(decs) and hold(done["dec"], self):
                return None
            return next(it["dec"], None)

        while done["feat"] < len(feats) or done["dec"] < len(decs) or model.feat_out or model.res_out:
            self.src["feat"].offer(lambda: next(it["feat"], None), gap_feat)
            self.src["dec"].offer(next_dec, gap_dec)
            self.sink["feat"].ready(stall_feat)
            self.sink["res"].ready(stall_res)
            await ReadOnly()
            if not expect_error:
                assert int(dut.error.value) == 0, f"cycle {self.cycle}: error raised (tag mismatch)"
            self._sink("feat", model.feat_out)
            self._sink("res", model.res_out)
            beat = self.src["feat"].fired()
            if beat is not None:
                model.push_feature(*beat)
                self.log["feat_in"].append((self.cycle, beat))
                if beat[2]:
                    self.log["tlast_in"].append(self.cycle)
                done["feat"] += 1
            beat = self.src["dec"].fired()
            if beat is not None:
                model.push_decision(*beat)
                self.log["dec_in"].append(self.cycle)
                done["dec"] += 1
            await RisingEdge(dut.clk)
            self.cycle += 1
            assert self.cycle - start < 50 * (len(feats) + len(decs) + 10), "timeout: samples stuck in the gate"
        self.src["feat"].idle()
        self.src["dec"].idle()
        assert model.pending == 0
        if not expect_error:
            assert model.tag_mismatches == 0


def causal(delay):
    """hold: decision k only ``delay`` cycles after sample k's tlast beat went in (an exit head)."""

    def hold(k, tb):
        tl = tb.log["tlast_in"]
        return len(tl) <= k or tb.cycle < tl[k] + delay

    return hold


async def timing_idle(dut, tb):
    """One sample at a time on an idle gate: its beats buffered first, then the decision."""
    cap = min(tb.max_len, tb.depth)
    lengths = [min(n, cap) for n in (1, 3, 40, 7, 2, 1, 12, 5, 40, 1)]
    exits = [0, 1, 0, 1, 1, 0, 0, 0, 1, 1]
    samples = tb.samples(0, 0.0, lengths=lengths, exits=exits)

    def hold(k, tb):
        tl, dec = tb.log["tlast_in"], tb.log["dec_in"]
        settled = not dec or tb.cycle >= dec[-1] + lengths[k - 1] + 4
        return len(tl) <= k or tb.cycle < tl[k] + 3 or not settled

    await tb.run(samples, 0.0, 0.0, 0.0, 0.0, hold=hold)
    feat_out, res_out = iter(tb.log["feat_out"]), iter(tb.log["res_out"])
    for k, (n, ex) in enumerate(zip(lengths, exits)):
        t = tb.log["dec_in"][k]
        if ex:
            c, _ = next(res_out)
            assert c - t == 1, f"sample {k} (exit): m_res {c - t} cycles after the decision, expected 1"
        else:
            cycles = [next(feat_out)[0] - t for _ in range(n)]
            assert cycles == list(range(1, n + 1)), (
                f"sample {k} (L={n}): m_feat beats at {cycles} cycles after the decision, expected 1..{n}"
            )
    dut._log.info("idle timing: decision -> m_res 1 cycle, -> m_feat beats 1..L cycles")


async def timing_back_to_back(dut, tb):
    """Decisions ahead of their features, no gaps, no backpressure: cut-through, one beat per
    cycle through forwarded and dropped samples alike (L cycles per sample)."""
    samples = tb.samples(600, 0.5)
    await tb.run(samples, 0.0, 0.0, 0.0, 0.0)
    ins = [c for c, _ in tb.log["feat_in"]]
    assert ins[-1] - ins[0] == len(ins) - 1, "feature input stalled: not one beat per cycle"
    in_cycle = {}
    for c, beat in tb.log["feat_in"]:
        in_cycle.setdefault(beat, c)
    lat = {c - in_cycle[beat] for c, beat in tb.log["feat_out"]}
    assert lat == {1}, f"cut-through latency {lat}, expected 1 cycle"
    dut._log.info(
        "back to back: %d beats of %d samples in %d cycles",
        len(ins),
        len(samples[2]),
        max(c for c, _ in tb.log["feat_out"] + tb.log["res_out"]) - ins[0] + 1,
    )


async def tag_error(dut, tb, exit_flag, bad_beat):
    """A 3-beat sample whose beat ``bad_beat`` has a wrong tag must raise `error` (sticky)."""
    await reset(dut, PORTS)
    feats, decs, lens = tb.samples(0, 0.0, lengths=[3], exits=[exit_flag])
    data, tag, last = feats[bad_beat]
    feats[bad_beat] = (data, tag ^ 1, last)
    good = tb.samples(0, 0.0, lengths=[2], exits=[0])
    await tb.run(good, 0.0, 0.0, 0.0, 0.0)
    assert int(dut.error.value) == 0
    await tb.run((feats, decs, lens), 0.0, 0.3, 0.0, 0.0, expect_error=True)
    assert tb.model.tag_mismatches == 1
    tb.model.tag_mismatches = 0
    await tb.run(tb.samples(0, 0.0, lengths=[4], exits=[1 - exit_flag]), 0.0, 0.0, 0.0, 0.0, expect_error=True)
    await ReadOnly()
    assert int(dut.error.value) == 1, f"tag mismatch on beat {bad_beat} (exit={exit_flag}) did not raise error"
    await RisingEdge(dut.clk)


@cocotb.test()
async def gate_stream(dut):
    cfg = json.loads(os.environ["PLUMB_CFG"])
    start_clock(dut)
    tb = Tb(dut, cfg)
    await reset(dut, PORTS)

    await timing_idle(dut, tb)
    await timing_back_to_back(dut, tb)

    # Decisions long after their features (feature FIFO fills), and long before them.
    await tb.run(tb.samples(400, 0.5), 0.0, 0.8, 0.2, 0.2)
    await tb.run(tb.samples(400, 0.5), 0.8, 0.0, 0.2, 0.2)
    # Causal (as behind a real head): decision some cycles after the sample's tlast; samples fit DEPTH.
    short = min(tb.max_len, tb.depth)
    await tb.run(tb.samples(500, 0.5, max_len=short), 0.2, 0.2, 0.3, 0.3, hold=causal(5))
    await tb.run(tb.samples(300, 0.3, max_len=short), 0.0, 0.0, 0.0, 0.0, hold=causal(0))
    # Constrained random: exit rate, gaps and backpressure per phase.
    per_phase = cfg["beats"] // len(cfg["mixes"])
    for exit_p, gf, gd, sf, sr in cfg["mixes"]:
        await tb.run(tb.samples(per_phase, exit_p), gf, gd, sf, sr)
    dut._log.info("checked %d output beats, %d feature beats in, %d exits", tb.checked, tb.n_beats, tb.n_exits)

    # A wrong tag on any beat (forwarded or dropped sample) raises `error` and keeps it.
    await tag_error(dut, tb, exit_flag=0, bad_beat=1)
    await tag_error(dut, tb, exit_flag=1, bad_beat=2)
