"""cocotb tests of sliding_window, collect and maxpool (run by test_conv_blocks.py).

The pytest side computes the input beats and the expected output beats (numpy and
eehw.golden) and writes them to the JSON file named by CONV_CFG; this module only drives and
checks the AXI-Stream handshakes:
- every output beat (data, tag, and tlast where the module has one) equals the next expected
  beat: no loss, no duplication, order kept; outputs hold while stalled, tvalid never drops
  before its handshake;
- phase 0 runs with no valid gaps and tready always high and checks the rate (the bottleneck
  side moves one beat per cycle) and the latency (input handshake -> first output handshake);
- the other phases use random valid gaps and tready backpressure;
- `error` (collect) must stay low on a good stream.
The received beats are written back to <build_dir>/received.json for the end-to-end checks that
pytest does (windows x weights == eehw.golden.Conv).

`collect_errors` drives directed bad streams into collect and checks that `error` rises.
"""

import json
import os
import random
from pathlib import Path

import cocotb
from axis_tb import Sink, Source, reset, start_clock
from cocotb.triggers import ReadOnly, RisingEdge


def load_cfg():
    return json.loads(Path(os.environ["CONV_CFG"]).read_text())


class Tb:
    def __init__(self, dut, cfg):
        self.dut, self.cfg = dut, cfg
        self.rng = random.Random(cfg["seed"])
        self.in_last = cfg.get("in_last", False)
        self.out_last = cfg.get("out_last", False)
        self.has_error = cfg.get("has_error", False)
        self.src = Source(dut, self.rng, fields=("tdata", "tuser", "tlast") if self.in_last else ("tdata", "tuser"))
        self.sink = Sink(dut, self.rng, fields=("tdata", "tuser", "tlast") if self.out_last else ("tdata", "tuser"))
        self.cycle = 0
        self.received = []
        self.in_cycles, self.out_cycles = [], []

    async def reset(self):
        await reset(self.dut, ("s_tvalid", "s_tdata", "s_tuser", "m_tready") + (("s_tlast",) if self.in_last else ()))

    async def run(self, beats, expected, gap_p, stall_p, check_error=True):
        """Drive ``beats`` (lists [data, tag(, last)]) and check ``expected`` output beats."""
        dut = self.dut
        beats, expected = [tuple(b) for b in beats], [tuple(e) for e in expected]
        i_in = i_out = 0
        todo = iter(beats)
        max_cycles = self.cycle + 20 * (len(beats) + len(expected) + 20)
        while i_in < len(beats) or i_out < len(expected):
            self.src.offer(lambda: next(todo, None), gap_p)
            self.sink.ready(stall_p)
            await ReadOnly()
            if self.has_error and check_error:
                assert int(dut.error.value) == 0, f"cycle {self.cycle}: error raised on a good stream"
            beat = self.sink.take(self.cycle)
            if beat is not None:
                assert i_out < len(expected), f"cycle {self.cycle}: extra output beat (tag {beat[1]})"
                want = expected[i_out]
                assert beat[1:] == want[1:], (
                    f"cycle {self.cycle}: output beat {i_out} tag/last {beat[1:]}, expected {want[1:]}")
                assert beat[0] == want[0], (
                    f"cycle {self.cycle}: output beat {i_out} data {beat[0]:#x}, expected {want[0]:#x}")
                self.received.append(list(beat))
                self.out_cycles.append(self.cycle)
                i_out += 1
            if self.src.fired() is not None:
                self.in_cycles.append(self.cycle)
                i_in += 1
            await RisingEdge(dut.clk)
            self.cycle += 1
            assert self.cycle < max_cycles, f"timeout: {i_in}/{len(beats)} in, {i_out}/{len(expected)} out"
        self.src.idle()
        dut.m_tready.value = 0


@cocotb.test()
async def stream(dut):
    cfg = load_cfg()
    start_clock(dut)
    tb = Tb(dut, cfg)
    await tb.reset()
    ins, outs = cfg["in_beats"], cfg["out_beats"]
    ipb, opb = cfg["in_per_sample"], cfg["out_per_sample"]
    samples = len(ins) // ipb

    # Phase 0: no gaps, no backpressure -> rate and latency.
    n0 = cfg["rate_samples"]
    await tb.run(ins[:n0 * ipb], outs[:n0 * opb], 0.0, 0.0)
    in_c, out_c = tb.in_cycles[:n0 * ipb], tb.out_cycles[:n0 * opb]
    latency = out_c[0] - in_c[ipb - 1]
    assert latency == cfg["latency"], f"latency {latency}, expected {cfg['latency']}"
    side = out_c if cfg["rate_side"] == "out" else in_c
    assert side[-1] - side[0] == len(side) - 1, (
        f"{cfg['rate_side']} side not one beat per cycle: {len(side)} beats in {side[-1] - side[0] + 1} cycles")
    # Cycles per sample, measured on the side that moves every cycle.
    per_sample = (side[-1] - side[0] + 1) / n0
    dut._log.info("cycles per sample %.2f, latency %d", per_sample, latency)

    # Random gaps and backpressure over the remaining samples.
    mixes = cfg["mixes"]
    rest = list(range(n0, samples))
    chunk = max(1, -(-len(rest) // len(mixes)))
    for k, (gap_p, stall_p) in enumerate(mixes):
        part = rest[k * chunk:(k + 1) * chunk]
        if not part:
            break
        a, b = part[0], part[-1] + 1
        await tb.run(ins[a * ipb:b * ipb], outs[a * opb:b * opb], gap_p, stall_p)
    assert len(tb.received) == len(outs)
    out = Path(os.environ["CONV_CFG"]).parent / "received.json"
    out.write_text(json.dumps({"beats": tb.received, "cycles_per_sample": per_sample, "latency": latency}))


@cocotb.test()
async def collect_errors(dut):
    """Directed bad streams: a tag change inside a sample, then a missing/early tlast."""
    cfg = load_cfg()
    start_clock(dut)
    tb = Tb(dut, cfg)
    p = cfg["P"]
    assert p >= 2, "collect_errors needs P >= 2"

    async def send(beats):
        await tb.run(beats, [], 0.0, 0.0, check_error=False)
        for _ in range(3):  # let the output drain
            dut.m_tready.value = 1
            await RisingEdge(dut.clk)
        dut.m_tready.value = 0

    good = [[q + 1, 5, int(q == p - 1)] for q in range(p)]
    bad_tag = [[q + 1, 5 if q != p - 1 else 6, int(q == p - 1)] for q in range(p)]
    bad_last = [[q + 1, 7, 0] for q in range(p)]
    early_last = [[q + 1, 8, int(q == 0)] for q in range(p)]
    for name, beats in [("tag", bad_tag), ("tlast missing", bad_last), ("tlast early", early_last)]:
        await tb.reset()
        await send(good)
        await ReadOnly()
        assert int(dut.error.value) == 0, "error high after a good sample"
        await RisingEdge(dut.clk)
        await send(beats)
        await ReadOnly()
        assert int(dut.error.value) == 1, f"error not raised by a bad {name}"
        await RisingEdge(dut.clk)
        dut._log.info("bad %s -> error raised", name)
