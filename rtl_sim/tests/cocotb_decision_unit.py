"""cocotb test of decision_unit (run by test_decision_unit.py; configuration in DU_CFG).

The reference is eehw.policy.policies itself (margin_score, pow2_softmax_sum, np.argmax), evaluated
with numpy on every stimulus row before the simulation starts. A driver coroutine pushes rows
back to back (with random valid gaps) and a monitor coroutine checks every output beat (exit
flag, class, confidence, tag, order) under random m_tready backpressure, and that a stalled
beat holds. Stimulus is grouped in phases, one threshold/enable setting each: the threshold is
a quasi-static register, so it changes only while the pipeline is empty. A last phase with no
gaps and no backpressure measures latency (first cycle a row is offered -> its output) and the
initiation interval (cfg["II"]: 1, or the serial unit's scan). Figures go to cfg["stats"] as JSON.
"""

import json
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from axis_tb import pack_rows, reset, start_clock
from cocotb.triggers import ReadOnly, RisingEdge

from eehw.policy.policies import margin_score, pow2_softmax_sum


class Reference:
    """Expected (word, tag) per row, word packed as the unit's m_tdata: {conf, class, exit}."""

    def __init__(self, cfg):
        self.n, self.w = cfg["N_CLASSES"], cfg["LOGIT_W"]
        self.pow2 = cfg["POLICY"] == 1
        self.shift, self.frac = cfg["SHIFT"], cfg["FRAC_BITS"]
        self.class_w = max(1, (self.n - 1).bit_length())
        self.lo, self.hi = -(1 << (self.w - 1)), (1 << (self.w - 1)) - 1

    def scores(self, z):
        return pow2_softmax_sum(z, self.shift, self.frac) if self.pow2 else margin_score(z)

    def words(self, z, threshold, enable):
        score = self.scores(z)
        cls = np.argmax(z, axis=1)
        passed = score <= threshold if self.pow2 else score >= threshold
        exit_ = passed & bool(enable)
        return [(int(s) << (self.class_w + 1)) | (int(c) << 1) | int(e) for s, c, e in zip(score, cls, exit_)]

    def decode(self, word):
        return {
            "exit": word & 1,
            "class": (word >> 1) & ((1 << self.class_w) - 1),
            "confidence": word >> (self.class_w + 1),
        }


class Stimulus:
    """Rows of logits by kind; every generator returns int64 (rows, N) inside the logit range."""

    def __init__(self, ref, rng):
        self.ref, self.rng = ref, rng

    def clip(self, z):
        return np.clip(z, self.ref.lo, self.ref.hi).astype(np.int64)

    def uniform(self, rows):
        return self.rng.integers(self.ref.lo, self.ref.hi + 1, size=(rows, self.ref.n), dtype=np.int64)

    def clustered(self, rows):
        """A base value plus noise of a random scale 2^k: small spreads give ties and pow2 sums > 2^F."""
        base = self.rng.integers(self.ref.lo, self.ref.hi + 1, size=(rows, 1))
        scale = 1 << self.rng.integers(0, self.ref.w, size=(rows, 1))
        noise = self.rng.integers(-(1 << 62), 1 << 62, size=(rows, self.ref.n)) % (2 * scale + 1) - scale
        return self.clip(base + noise)

    def ties(self, rows):
        """Two or more equal maxima at random positions, sometimes all of them."""
        z = self.clustered(rows)
        for r in range(rows):
            k = int(self.rng.integers(2, self.ref.n + 1))
            where = self.rng.choice(self.ref.n, size=k, replace=False)
            z[r, where] = z[r].max()
        return z

    def all_equal(self):
        values = [self.ref.lo, self.ref.hi, 0, -1, 1] + list(self.rng.integers(self.ref.lo, self.ref.hi + 1, 20))
        return np.array([[v] * self.ref.n for v in values], dtype=np.int64)

    def extremes(self, rows):
        """Only the two saturated values; plus one maximum among minima at every position."""
        pick = self.rng.integers(0, 2, size=(rows, self.ref.n))
        z = np.where(pick == 1, self.ref.hi, self.ref.lo).astype(np.int64)
        one_hot = np.full((self.ref.n, self.ref.n), self.ref.lo, dtype=np.int64)
        np.fill_diagonal(one_hot, self.ref.hi)
        one_cold = np.full((self.ref.n, self.ref.n), self.ref.hi, dtype=np.int64)
        np.fill_diagonal(one_cold, self.ref.lo)
        return np.concatenate([z, one_hot, one_cold])

    def with_margin(self, margins):
        """Rows whose top1 - top2 is exactly the given margin (each <= 2^W - 1)."""
        n, lo, hi = self.ref.n, self.ref.lo, self.ref.hi
        z = np.empty((len(margins), n), dtype=np.int64)
        for r, m in enumerate(margins):
            top1 = int(self.rng.integers(lo + m, hi + 1))
            top2 = top1 - m
            row = self.rng.integers(lo, top2 + 1, size=n)
            i, j = self.rng.choice(n, size=2, replace=False)
            row[i], row[j] = top1, top2
            z[r] = row
        return z

    def mixed(self, rows):
        parts = [self.uniform(rows // 3), self.clustered(rows - rows // 3 - rows // 10), self.ties(rows // 10)]
        z = np.concatenate(parts)
        return z[self.rng.permutation(len(z))]


def build_phases(cfg, ref):
    """[(name, rows, threshold, enable, gap_p, stall_p)]: directed phases, then the random bulk."""
    rng = np.random.default_rng(cfg["seed"])
    st = Stimulus(ref, rng)
    thr_max = (1 << cfg["THR_W"]) - 1
    gap, stall = cfg["gap_p"], cfg["stall_p"]
    phases = []

    def thr_near(z):
        scores = ref.scores(z)
        return int(scores[int(rng.integers(0, len(scores)))])

    directed = np.concatenate([st.ties(300), st.all_equal(), st.extremes(300), st.clustered(300)])
    for thr in (0, 1, thr_max, thr_near(directed)):
        phases.append((f"directed thr={thr}", directed, thr, 1, 0.5, 0.5))
    phases.append(("directed enable=0", directed, 0 if ref.pow2 else thr_max, 0, gap, stall))
    phases.append(("directed enable=0 always-pass thr", directed, thr_max if ref.pow2 else 0, 0, gap, stall))

    # Threshold edges: the threshold exactly at a score, one below and one above.
    for _ in range(4):
        z = st.clustered(200)
        if not ref.pow2:
            m = int(rng.integers(1, (1 << cfg["LOGIT_W"]) - 1))
            z = np.concatenate([z, st.with_margin([m - 1, m, m + 1] * 30)])
            centre = m
        else:
            centre = thr_near(z)
        for thr in (centre - 1, centre, centre + 1):
            if 0 <= thr <= thr_max:
                phases.append((f"edge thr={thr}", z, thr, 1, gap, stall))

    # The random bulk, in slices with thresholds taken from their own scores.
    remaining, slices = cfg["random_rows"], cfg["random_slices"]
    for k in range(slices):
        rows = remaining // (slices - k)
        remaining -= rows
        z = st.mixed(rows)
        phases.append((f"random {k}", z, min(thr_near(z), thr_max), 1, gap, stall))

    phases.append(("throughput", st.mixed(cfg["burst_rows"]), thr_near(directed), 1, 0.0, 0.0))
    return phases


class Tb:
    def __init__(self, dut, cfg):
        self.dut, self.cfg = dut, cfg
        self.ref = Reference(cfg)
        self.rng = random.Random(cfg["seed"])
        self.tag_mask = (1 << cfg["TAG_W"]) - 1
        self.cycle = 0
        self.expected = []  # (word, tag) per row sent, in order
        self.received = 0
        self.in_cycles, self.out_cycles = [], []
        self.offered = []  # per row, the first cycle its s_tvalid was high
        self.stall_p = 0.0
        self.errors = []

    async def reset(self):
        await reset(self.dut, ("s_tvalid", "s_tdata", "s_tuser", "m_tready", "threshold", "enable"))
        await RisingEdge(self.dut.clk)

    async def drive(self, words, tags, gap_p):
        """Driver: one row per handshake, random gaps; returns after the last handshake."""
        dut, rng = self.dut, self.rng
        i, n = 0, len(words)
        while i < n:
            if gap_p and rng.random() < gap_p:
                dut.s_tvalid.value = 0
                await RisingEdge(dut.clk)
                continue
            dut.s_tvalid.value = 1
            dut.s_tdata.value = words[i]
            dut.s_tuser.value = tags[i]
            await ReadOnly()
            if len(self.offered) == len(self.in_cycles):
                self.offered.append(self.cycle)
            if dut.s_tready.value:
                self.in_cycles.append(self.cycle)
                i += 1
            await RisingEdge(dut.clk)
        dut.s_tvalid.value = 0

    async def monitor(self):
        """Monitor: random m_tready; checks every accepted beat and that a stalled beat holds."""
        dut, rng = self.dut, self.rng
        held = None
        while True:
            ready = self.stall_p == 0.0 or rng.random() >= self.stall_p
            dut.m_tready.value = int(ready)
            await ReadOnly()
            if dut.m_tvalid.value:
                beat = (int(dut.m_tdata.value), int(dut.m_tuser.value))
                if held is not None and beat != held:
                    self.errors.append(f"cycle {self.cycle}: output changed while stalled: {held} -> {beat}")
                if ready:
                    self.check(beat)
                    held = None
                else:
                    held = beat
            elif held is not None:
                self.errors.append(f"cycle {self.cycle}: m_tvalid dropped before the handshake")
                held = None
            await RisingEdge(dut.clk)
            self.cycle += 1

    def check(self, beat):
        k = self.received
        self.received += 1
        self.out_cycles.append(self.cycle)
        if k >= len(self.expected):
            self.errors.append(f"cycle {self.cycle}: output {beat} was never input (duplicate?)")
            return
        if beat != self.expected[k] and len(self.errors) < 20:
            got, want = self.ref.decode(beat[0]), self.ref.decode(self.expected[k][0])
            self.errors.append(
                f"row {k} (cycle {self.cycle}): got {got} tag {beat[1]}, "
                f"expected {want} tag {self.expected[k][1]}; logits {self.rows[k].tolist()}"
            )
        elif beat != self.expected[k]:
            self.errors.append("...")

    async def run_phase(self, z, threshold, enable, gap_p, stall_p, words=None):
        """``words``: the expected m_tdata per row when a vector file gives them (else the reference's)."""
        dut = self.dut
        # The threshold is sampled by the output stage: change it only with the pipeline empty.
        while self.received < len(self.expected):
            await RisingEdge(dut.clk)
        dut.threshold.value = threshold
        dut.enable.value = enable
        self.stall_p = stall_p
        first = len(self.expected)
        tags = [(first + r) & self.tag_mask for r in range(len(z))]
        self.expected += list(zip(self.ref.words(z, threshold, enable) if words is None else words, tags))
        self.rows = z if first == 0 else np.concatenate([self.rows, z])
        start_in, start_out = len(self.in_cycles), len(self.out_cycles)
        await self.drive(pack_rows(z, self.ref.w), tags, gap_p)
        limit = self.cycle + 100 * (len(z) + 20)
        while self.received < len(self.expected):
            await RisingEdge(dut.clk)
            assert self.cycle < limit, f"timeout: {self.received} of {len(self.expected)} outputs"
        return self.in_cycles[start_in:], self.out_cycles[start_out:]


async def run_vector_file(dut, cfg):
    """The shared vector file's case ``cfg["case"]``: every group as a phase, under random gaps and
    backpressure, each output checked against the file's expected exit, class and confidence."""
    from eehw.rtl_sim.models.decision_vectors import read

    case = read(Path(cfg["vectors"]))[cfg["case"]]
    tb = Tb(dut, cfg)
    start_clock(dut)
    await tb.reset()
    cocotb.start_soon(tb.monitor())
    class_w = tb.ref.class_w
    rows = 0
    for g in case.groups:
        words = [(int(s) << (class_w + 1)) | (int(c) << 1) | int(e) for e, c, s in zip(g.exit, g.cls, g.conf)]
        await tb.run_phase(g.z, g.threshold, g.enable, cfg["gap_p"], cfg["stall_p"], words)
        assert not tb.errors, f"group thr={g.threshold} en={g.enable}: " + "\n".join(tb.errors[:20])
        rows += len(g.z)
    for _ in range(2 * cfg["LATENCY"] + 4):
        await RisingEdge(dut.clk)
    assert not tb.errors, "\n".join(tb.errors[:20])
    assert tb.received == len(tb.expected) == rows
    Path(cfg["stats"]).write_text(json.dumps({"vectors": rows, "groups": len(case.groups)}))


@cocotb.test()
async def decision_unit_matches_policies(dut):
    cfg = json.loads(os.environ["DU_CFG"])
    if cfg.get("vectors"):
        await run_vector_file(dut, cfg)
        return
    wall = time.perf_counter()
    tb = Tb(dut, cfg)
    start_clock(dut)
    await tb.reset()
    cocotb.start_soon(tb.monitor())
    phases = build_phases(cfg, tb.ref)
    latency = None
    burst = None
    for name, z, threshold, enable, gap_p, stall_p in phases:
        first = len(tb.in_cycles)
        ins, outs = await tb.run_phase(z, threshold, enable, gap_p, stall_p)
        assert not tb.errors, f"phase '{name}': " + "\n".join(tb.errors[:20])
        if name == "throughput":
            # An idle unit takes a row in the cycle it is offered (the serial unit too: it copies
            # the row, so the head's output register is free for the next sample at once).
            assert tb.in_cycles[first] == tb.offered[first], (
                f"an idle unit held its input {tb.in_cycles[first] - tb.offered[first]} cycles"
            )
            latency = outs[0] - tb.offered[first]
            burst = {"rows": len(z), "input_cycles": ins[-1] - ins[0] + 1, "output_cycles": outs[-1] - outs[0] + 1}
    # Let any spurious extra beat show up before declaring success.
    for _ in range(2 * cfg["LATENCY"] + 4):
        await RisingEdge(dut.clk)
    assert not tb.errors, "\n".join(tb.errors[:20])
    assert tb.received == len(tb.expected), f"{tb.received} outputs for {len(tb.expected)} inputs"
    assert latency == cfg["LATENCY"], f"latency {latency} cycles, expected {cfg['LATENCY']}"
    span = (burst["rows"] - 1) * cfg["II"] + 1
    assert burst["input_cycles"] == span and burst["output_cycles"] == span, (
        f"not one sample every {cfg['II']} cycles without backpressure: {burst}"
    )
    stats = {
        "vectors": len(tb.expected),
        "random_vectors": cfg["random_rows"],
        "cycles": tb.cycle,
        "latency": latency,
        "ii": (burst["output_cycles"] - 1) / (burst["rows"] - 1),
        "phases": len(phases),
        "sim_seconds": round(time.perf_counter() - wall, 2),
    }
    Path(cfg["stats"]).write_text(json.dumps(stats))
