"""cocotb stream driver for eehw's vector AXI-Stream modules (mvu, requant).

Reads a JSON file named in EEHW_STREAM_CFG: the packed input words and tags, and a list of
phases, each with its stimulus (probability of an input gap, of a cycle without m_tready, one
sample at a time) and an .npz path to write what came out (tag, data, input and output handshake
cycles). Checking is done by the pytest caller against eehw.golden, so this file holds no model.

Each cycle the inputs are driven, the settled values are read in ReadOnly, and a handshake is
counted when valid and ready are both high before the rising edge; cycle numbers are rising
edges since reset, so out_cycle - in_cycle is the handshake-to-handshake latency.
"""

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from axis_tb import Sink, Source, reset, start_clock
from cocotb.triggers import ReadOnly, RisingEdge


@cocotb.test()
async def stream(dut):
    cfg = json.loads(Path(os.environ["EEHW_STREAM_CFG"]).read_text())
    words = [int(w) for w in cfg["words"]]
    tags = cfg["tags"]
    max_cycles = cfg.get("max_cycles", 200_000)

    start_clock(dut)
    await reset(dut)

    cycle = 0
    for phase in cfg["phases"]:
        rng = random.Random(phase["seed"])
        src, sink = Source(dut, rng), Sink(dut, rng)
        gap_p, stall_p, one_at_a_time = phase["gap_p"], phase["stall_p"], phase["one_at_a_time"]
        total = len(words)
        in_cycle = np.zeros(total, dtype=np.int64)
        out_cycle = np.zeros(total, dtype=np.int64)
        out_tag = np.zeros(total, dtype=np.int64)
        out_data = []
        sent = received = offered = 0
        start = cycle

        def next_beat():
            nonlocal offered
            if offered == total or (one_at_a_time and received != sent):
                return None
            offered += 1
            return words[offered - 1], tags[offered - 1]

        while received < total:
            src.offer(next_beat, gap_p)
            sink.ready(stall_p)
            await ReadOnly()
            if src.fired() is not None:
                in_cycle[sent] = cycle
                sent += 1
            beat = sink.take(cycle)
            if beat is not None:
                if received >= total:
                    raise AssertionError("more outputs than inputs")
                out_data.append(str(beat[0]))
                out_tag[received] = beat[1]
                out_cycle[received] = cycle
                received += 1
            await RisingEdge(dut.clk)
            cycle += 1
            if cycle - start > max_cycles:
                raise RuntimeError(f"timeout: {received} of {total} outputs after {cycle - start} cycles")
        # Idle a few cycles with m_tready high: nothing more may come out.
        src.idle()
        dut.m_tready.value = 1
        for _ in range(cfg.get("drain_cycles", 8)):
            await ReadOnly()
            assert not dut.m_tvalid.value, "an output beat appeared with no input left (duplicate?)"
            await RisingEdge(dut.clk)
            cycle += 1
        np.savez(phase["output"], tag=out_tag, data=np.array(out_data), in_cycle=in_cycle, out_cycle=out_cycle)
