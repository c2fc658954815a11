"""cocotb test of the pixel-streaming sliding_window and maxpool (run by test_conv_blocks.py).

The pytest side computes the input beats, the expected output beats (independent numpy im2col /
pooling) and the header timing formulas, and writes them to the JSON file named by CONV_CFG;
this module drives and checks the AXI-Stream handshakes:
- every output beat (data, tag, tlast) equals the next expected beat: no loss, duplication or
  reordering; outputs hold while stalled, tvalid never drops before its handshake (StallCheck);
- timing, no gaps and tready always high: sample 0 alone on the idle module (first-beat and
  last-beat latency), then `b2b` samples back to back (cycles per sample = the distance between
  consecutive samples' last output beats, every one of them);
- then constrained-random valid gaps and tready stalls, several mixes, samples back to back.
The measured timing is written to <build_dir>/timing.json.
"""

import json
import os
from pathlib import Path

import cocotb
from axis_tb import Sink, Source, reset, start_clock
from cocotb.triggers import ReadOnly, RisingEdge

FIELDS = ("tdata", "tuser", "tlast")


class Tb:
    def __init__(self, dut, cfg):
        import random

        self.dut, self.cfg = dut, cfg
        self.rng = random.Random(cfg["seed"])
        self.src = Source(dut, self.rng, fields=FIELDS)
        self.sink = Sink(dut, self.rng, fields=FIELDS)
        self.cycle = 0

    async def run(self, beats, expected, gap_p, stall_p):
        """Drive ``beats`` ([data, tag, last]) and check ``expected`` output beats; returns the
        cycles of the input and of the output handshakes."""
        dut = self.dut
        beats, expected = [tuple(b) for b in beats], [tuple(e) for e in expected]
        in_c, out_c = [], []
        todo = iter(beats)
        start = self.cycle
        limit = 40 * (len(beats) + len(expected) + self.cfg["steps_per_sample"] * self.cfg["samples"] + 50)
        while len(in_c) < len(beats) or len(out_c) < len(expected):
            self.src.offer(lambda: next(todo, None), gap_p)
            self.sink.ready(stall_p)
            await ReadOnly()
            beat = self.sink.take(self.cycle)
            if beat is not None:
                i = len(out_c)
                assert i < len(expected), f"cycle {self.cycle}: extra output beat {beat}"
                want = expected[i]
                assert beat[1:] == want[1:], (
                    f"cycle {self.cycle}: output beat {i} (tag, last) {beat[1:]}, expected {want[1:]}"
                )
                assert beat[0] == want[0], (
                    f"cycle {self.cycle}: output beat {i} data {beat[0]:#x}, expected {want[0]:#x}"
                )
                out_c.append(self.cycle)
            if self.src.fired() is not None:
                in_c.append(self.cycle)
            await RisingEdge(dut.clk)
            self.cycle += 1
            assert self.cycle - start < limit, f"timeout: {len(in_c)}/{len(beats)} in, {len(out_c)}/{len(expected)} out"
        self.src.idle()
        dut.m_tready.value = 0
        return in_c, out_c

    async def idle(self, cycles):
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
            self.cycle += 1


@cocotb.test()
async def stream(dut):
    cfg = json.loads(Path(os.environ["CONV_CFG"]).read_text())
    start_clock(dut)
    tb = Tb(dut, cfg)
    await reset(dut, ("s_tvalid", "s_tdata", "s_tuser", "s_tlast", "m_tready"))
    ins, outs = cfg["in_beats"], cfg["out_beats"]
    ipb, opb = cfg["in_per_sample"], cfg["out_per_sample"]
    samples, b2b = cfg["samples"], cfg["b2b"]

    def part(a, b):
        return ins[a * ipb : b * ipb], outs[a * opb : b * opb]

    # Sample 0 alone on the idle module: latencies.
    in_c, out_c = await tb.run(*part(0, 1), 0.0, 0.0)
    first_lat = out_c[0] - in_c[0]
    last_lat = out_c[-1] - in_c[-1]
    await tb.idle(cfg["steps_per_sample"] + 10)
    # Back to back: cycles per sample between consecutive last output beats.
    in_c, out_c = await tb.run(*part(1, 1 + b2b), 0.0, 0.0)
    lasts = [out_c[(s + 1) * opb - 1] for s in range(b2b)]
    per_sample = sorted({b - a for a, b in zip(lasts, lasts[1:])})
    timing = {"first_latency": first_lat, "last_latency": last_lat, "cycles_per_sample": per_sample}
    (Path(os.environ["CONV_CFG"]).parent / "timing.json").write_text(json.dumps(timing))
    dut._log.info("timing %s, expected %s", timing, cfg["timing"])
    want = cfg["timing"]
    assert first_lat == want["first_latency"], f"first-beat latency {first_lat}, header formula {want['first_latency']}"
    assert last_lat == want["last_latency"], f"last-beat latency {last_lat}, header formula {want['last_latency']}"
    assert per_sample == [want["cycles_per_sample"]], (
        f"cycles per sample {per_sample}, header formula {want['cycles_per_sample']}"
    )

    # Random gaps and backpressure, samples back to back within each mix.
    rest = list(range(1 + b2b, samples))
    mixes = cfg["mixes"]
    chunk = max(1, -(-len(rest) // len(mixes)))
    for k, (gap_p, stall_p) in enumerate(mixes):
        sel = rest[k * chunk : (k + 1) * chunk]
        if sel:
            await tb.run(*part(sel[0], sel[-1] + 1), gap_p, stall_p)
