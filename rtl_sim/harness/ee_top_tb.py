"""Per-cycle cocotb harness for any eehw top with the project's AXI-Stream interface.

The reference implementation of the stimulus that the generated wrapper (ee_tb.v.j2, run by
ee_tb.py) performs inside the simulation: eehw.hw.rtl.sim runs it with ``harness="cocotb"``, and
tests/test_rtl_design.py and benchmarks/sim_speed.py compare the two cycle for cycle. It wakes
Python several times per clock, so it is the slow path.

Driven by a JSON file named in EEHW_TB_CONFIG: the input beats (an .npy of integers, one row
per beat, ``beats`` rows per sample, tlast on a sample's last), element width, thresholds and enables, stimulus options (random
input gaps, random output backpressure, one sample at a time), and where to write what came
out (an .npz: tag, data, each sample's first input beat and its result's handshake cycles). Checking is done by the caller
against the golden model, so this file holds no expectations of its own.
"""

import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from eehw.hw.bits import pack


@cocotb.test()
async def run(dut):
    cfg = json.loads(open(os.environ["EEHW_TB_CONFIG"]).read())
    inputs = np.load(cfg["inputs"])
    beats = cfg["beats"]
    words = [pack(row, cfg["in_width"]) for row in inputs.reshape(len(inputs), -1)]
    total = len(words) // beats * cfg.get("repeat", 1)
    tag_mask = (1 << cfg["tag_w"]) - 1
    rng = random.Random(cfg.get("seed", 0))
    gap_p, stall_p, one_at_a_time = cfg.get("gap_p", 0.0), cfg.get("stall_p", 0.0), cfg.get("one_at_a_time", False)
    max_cycles = cfg.get("max_cycles", 50_000_000)
    idle_limit = cfg.get("idle_limit", 100_000)  # no handshake this long: a lost sample, not slow stimulus

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    if cfg["early_exits"]:  # a design with only the final exit has no threshold registers
        dut.threshold.value = cfg["threshold_word"]
        dut.enable.value = cfg["enable_word"]
    dut.rst.value = 1
    dut.s_tvalid.value = 0
    dut.m_tready.value = 0
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    start = time.perf_counter()

    sent, received, cycle, beat, idle = 0, 0, 0, 0, 0
    in_cycle = np.zeros(total, dtype=np.int64)
    out_tag = np.zeros(total, dtype=np.int64)
    out_data = []
    out_cycle = np.zeros(total, dtype=np.int64)
    valid, ready = False, True
    error_seen = False
    while received < total:
        # Drive this cycle's inputs, then look at the settled values to see what handshakes.
        # one_at_a_time waits between samples, never inside one: a result may leave before its
        # sample's last beats are in (trailing pixels no window reads).
        if not valid and sent < total and (not one_at_a_time or beat > 0 or received == sent):
            if rng.random() >= gap_p:
                dut.s_tdata.value = words[(sent * beats) % len(words) + beat]
                dut.s_tuser.value = sent & tag_mask
                dut.s_tlast.value = int(beat == beats - 1)
                valid = True
        dut.s_tvalid.value = int(valid)
        ready = rng.random() >= stall_p
        dut.m_tready.value = int(ready)
        await ReadOnly()
        fired_in = valid and dut.s_tready.value
        fired_out = ready and dut.m_tvalid.value
        if fired_in:
            if beat == 0:
                in_cycle[sent] = cycle
            beat += 1
            if beat == beats:
                sent, beat = sent + 1, 0
            valid = False
        idle = 0 if fired_in or fired_out else idle + 1
        if fired_out:
            out_tag[received] = int(dut.m_tuser.value)
            out_data.append(int(dut.m_tdata.value))
            out_cycle[received] = cycle
            received += 1
        error_seen |= bool(dut.error.value)
        await RisingEdge(dut.clk)
        cycle += 1
        if cycle > max_cycles or idle > idle_limit:
            raise RuntimeError(f"timeout: {received} of {total} results after {cycle} cycles")

    np.savez(
        cfg["output"],
        tag=out_tag,
        data=np.array([str(d) for d in out_data]),
        out_cycle=out_cycle,
        in_cycle=in_cycle,
        cycles=cycle,
        error=error_seen,
        seconds=time.perf_counter() - start,
    )
