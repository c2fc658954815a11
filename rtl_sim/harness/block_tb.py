"""Per-cycle cocotb harness for ONE block with the project's AXI-Stream interface.

Any module with the ports clk, rst (synchronous, active high), s_tdata/s_tvalid/s_tready/
s_tuser and m_tdata/m_tvalid/m_tready/m_tuser, optionally s_tlast/m_tlast (a sample is then
``beats`` input beats, tlast on its last) and a sticky ``error`` output runs here: our generated blocks (eehw/hw/rtl/design.py) and, when Vitis HLS is
installed, the Verilog it writes per block, as FINN runs every layer through its rtlsim.

Driven by a JSON file named in EEHW_TB_CONFIG (written by eehw/hw/rtl/block_sim.py): the input words
(hex, one per beat) and beats per sample, seeds and probabilities of random input gaps and output stalls, how many samples of the
back-to-back burst that measures the initiation interval, and where to write what came out
(JSON: per output beat its cycle, tag and data; per sample the cycle of its first input beat; the error flag and
any AXI-Stream rule broken). The caller decodes and checks; this file holds no expectations.
"""

import json
import os
import random
import sys
import time
from pathlib import Path

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # axis_tb lives with the module tests
from axis_tb import Sink, Source, reset, start_clock  # noqa: E402


@cocotb.test()
async def run(dut):
    cfg = json.loads(Path(os.environ["EEHW_TB_CONFIG"]).read_text())
    words = [int(w, 16) for w in cfg["words"]]
    beats = int(cfg.get("beats", 1))
    samples = len(words) // beats
    burst = int(cfg["burst"])
    total = samples + burst  # the burst repeats the first samples back to back
    out_beats = int(cfg.get("out_beats", 1))
    result = {"in_cycle": [], "out": [], "error": False, "protocol": "", "mismatch": "", "timeout": False, "cycles": 0}

    widths = {
        "s_tdata": len(dut.s_tdata),
        "m_tdata": len(dut.m_tdata),
        "s_tuser": len(dut.s_tuser),
        "m_tuser": len(dut.m_tuser),
    }
    result["widths"] = widths
    # tdata may be wider than the elements (Vitis HLS pads AXI-Stream data to whole bytes).
    if (
        widths["s_tdata"] < cfg["in_bits"]
        or widths["m_tdata"] < cfg["out_bits"]
        or widths["s_tuser"] != widths["m_tuser"]
    ):
        result["mismatch"] = (
            f"port widths {widths} do not fit {cfg['in_bits']}-bit input beats and "
            f"{cfg['out_bits']}-bit output beats with one tag width"
        )
        Path(cfg["output"]).write_text(json.dumps(result))
        return
    tag_mask = (1 << widths["s_tuser"]) - 1
    has_error = hasattr(dut, "error")
    has_last = hasattr(dut, "s_tlast")
    fields = ("tdata", "tuser", "tlast") if has_last else ("tdata", "tuser")

    rng = random.Random(int(cfg["seed"]))
    start_clock(dut)
    await reset(dut, low=("s_tvalid", "s_tdata", "s_tuser", "m_tready") + (("s_tlast",) if has_last else ()))
    src, sink = Source(dut, rng, fields=fields), Sink(dut, rng, fields=fields)
    start = time.perf_counter()

    offered = 0  # beats

    def next_beat():
        nonlocal offered
        if offered >= total * beats:
            return None
        sample, j = divmod(offered, beats)
        word = words[(sample if sample < samples else sample - samples) * beats + j]
        offered += 1
        return (word, sample & tag_mask, int(j == beats - 1))[: len(fields)]

    # ``matched`` counts output beats whose tag belongs to an outstanding sample, so a duplicating
    # block neither ends the run early nor starts the burst before the random phase has drained.
    outstanding: dict[int, int] = {}  # tag -> output beats still expected
    sent, matched, cycle, idle, tail = 0, 0, 0, 0, 0  # sent: input beats
    try:
        while matched < total * out_beats or tail < cfg["tail"]:
            draining = matched >= total * out_beats
            tail += draining
            # The burst starts once the random phase has drained, so its intervals are the block's own.
            hold = offered == len(words) and matched < samples * out_beats
            random_phase = sent < len(words)
            if hold and not src.busy:
                src.idle()
            else:
                src.offer(next_beat, cfg["gap_p"] if random_phase else 0.0)
            sink.ready(cfg["stall_p"] if matched < samples * out_beats else 0.0)
            await ReadOnly()
            moved = False
            fired = src.fired()
            if fired is not None:
                if sent % beats == 0:
                    result["in_cycle"].append(cycle)
                    outstanding[fired[1]] = outstanding.get(fired[1], 0) + out_beats
                sent += 1
                moved = True
            beat = sink.take(cycle)
            if beat is not None:
                result["out"].append([cycle, beat[1], f"{beat[0]:x}", beat[2] if has_last else 1])
                if outstanding.get(beat[1], 0) > 0:
                    outstanding[beat[1]] -= 1
                    matched += 1
                moved = True
            if has_error and int(dut.error.value):
                result["error"] = True
            await RisingEdge(dut.clk)
            cycle += 1
            idle = 0 if moved else idle + 1
            if idle > cfg["idle_limit"] and not draining:
                result["timeout"] = True
                break
    except AssertionError as exc:  # StallCheck: an output beat changed or vanished under backpressure
        result["protocol"] = str(exc)
    result["cycles"] = cycle
    result["seconds"] = time.perf_counter() - start
    Path(cfg["output"]).write_text(json.dumps(result))
