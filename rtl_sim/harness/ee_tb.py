"""cocotb test of the generated simulation wrapper (ee_tb.v.j2) around an eehw top.

All per-cycle work (stimulus, random gaps and stalls, logging) is in the wrapper, so this test
only sets the run configuration named by EEHW_TB_CONFIG (a JSON file), holds reset for four
cycles and waits for `done`: one wakeup per run instead of several per clock cycle. It writes
the wrapper's final counters next to the logs the wrapper wrote; eehw/hw/rtl/sim.py checks the rest.
"""

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge


@cocotb.test()
async def run(dut):
    cfg = json.loads(open(os.environ["EEHW_TB_CONFIG"]).read())
    Clock(dut.clk, 10, unit="ns").start()
    for name in ("n_words", "total", "gap_thr", "stall_thr", "one_at_a_time", "seed", "idle_limit", "max_cycles"):
        getattr(dut, f"{name}_in").value = int(cfg[name])
    if cfg["early_exits"]:  # a design with only the final exit has no threshold registers
        dut.threshold_in.value = cfg["threshold_word"]
        dut.enable_in.value = cfg["enable_word"]
    dut.rst_in.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst_in.value = 0
    start = time.perf_counter()
    await RisingEdge(dut.done_out)
    summary = {
        "cycles": int(dut.cycle_out.value),
        "received": int(dut.received_out.value),
        "timeout": bool(dut.timeout_out.value),
        "error": bool(dut.error_out.value),
        "seconds": time.perf_counter() - start,
    }
    with open(cfg["summary"], "w") as f:
        json.dump(summary, f)
