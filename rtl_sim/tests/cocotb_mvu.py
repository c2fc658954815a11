"""cocotb stream driver for eehw's beat-streaming modules (mvu, requant, dwc).

Reads a JSON file named in EEHW_STREAM_CFG: the input beats (packed tdata as a decimal string,
tuser, tlast), how many input beats make one "unit" and how many output beats it gives (an MVU
vector: SF beats in, 1 out; a dwc split: 1 in, R out), and a list of phases, each with its
stimulus (probability of an input gap, of a cycle without m_tready, one unit at a time) and an
.npz path to write what came out (data, tag, last and the handshake cycle of every output beat,
the handshake cycle of every input beat). Checking is done by the pytest caller against its
own numpy reference, so this file holds no model.

Each cycle the inputs are driven, the settled values are read in ReadOnly, and a handshake is
counted when valid and ready are both high before the rising edge; cycle numbers are rising
edges since reset, so out_cycle - in_cycle is the handshake-to-handshake latency. The Sink
checks that an output beat, once valid, stays unchanged until taken.
"""

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from axis_tb import Sink, Source, reset, start_clock
from cocotb.triggers import ReadOnly, RisingEdge

FIELDS = ("tdata", "tuser", "tlast")


@cocotb.test()
async def stream(dut):
    cfg = json.loads(Path(os.environ["EEHW_STREAM_CFG"]).read_text())
    beats = [(int(d), int(t), int(last)) for d, t, last in cfg["beats"]]
    unit_in, unit_out = cfg.get("unit_in", 1), cfg.get("unit_out", 1)
    n_out = len(beats) // unit_in * unit_out
    max_cycles = cfg.get("max_cycles", 200_000)

    start_clock(dut)
    await reset(dut, low=("s_tvalid", "s_tdata", "s_tuser", "s_tlast", "m_tready"))

    cycle = 0
    for phase in cfg["phases"]:
        rng = random.Random(phase["seed"])
        src, sink = Source(dut, rng, fields=FIELDS), Sink(dut, rng, fields=FIELDS)
        gap_p, stall_p, one_at_a_time = phase["gap_p"], phase["stall_p"], phase["one_at_a_time"]
        in_cycle = np.zeros(len(beats), dtype=np.int64)
        out_cycle = np.zeros(n_out, dtype=np.int64)
        out_tag = np.zeros(n_out, dtype=np.int64)
        out_last = np.zeros(n_out, dtype=np.int64)
        out_data = []
        sent = received = offered = 0
        start = cycle

        def next_beat():
            nonlocal offered
            if offered == len(beats):
                return None
            # one unit at a time: the next unit starts only when the previous one is all out
            if one_at_a_time and offered % unit_in == 0 and received != offered // unit_in * unit_out:
                return None
            offered += 1
            return beats[offered - 1]

        while received < n_out:
            src.offer(next_beat, gap_p)
            sink.ready(stall_p)
            await ReadOnly()
            if src.fired() is not None:
                in_cycle[sent] = cycle
                sent += 1
            beat = sink.take(cycle)
            if beat is not None:
                out_data.append(str(beat[0]))
                out_tag[received], out_last[received] = beat[1], beat[2]
                out_cycle[received] = cycle
                received += 1
            await RisingEdge(dut.clk)
            cycle += 1
            if cycle - start > max_cycles:
                raise RuntimeError(f"timeout: {received} of {n_out} outputs after {cycle - start} cycles")
        assert sent == len(beats), f"{sent} of {len(beats)} input beats taken but all outputs came out"
        # Idle a few cycles with m_tready high: nothing more may come out.
        src.idle()
        dut.m_tready.value = 1
        for _ in range(cfg.get("drain_cycles", 8)):
            await ReadOnly()
            assert not dut.m_tvalid.value, "an output beat appeared with no input left (duplicate?)"
            await RisingEdge(dut.clk)
            cycle += 1
        np.savez(
            phase["output"], data=np.array(out_data), tag=out_tag, last=out_last, in_cycle=in_cycle, out_cycle=out_cycle
        )
