"""The RTL top's AXI wrapper (eehw.hw.rtl.axi_ip) driven as the PS and the AXI DMA drive it on the board.

AXI_IP_CFG (JSON) names the batches: per batch the register writes (offset, value) the driver
makes, the DMA words of its samples, the registers to read back, and the random MM2S gap and
S2MM stall probabilities. Every result word and its TLAST go to ``out``; the pytest side
decodes them with the PYNQ driver's own functions and compares them with the golden model.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

MASK32 = (1 << 32) - 1


async def until(dut, *signals: str) -> None:
    """Hold the driven values until every named output is high on a rising edge (the handshake)."""
    while True:
        await ReadOnly()
        done = all(int(getattr(dut, name).value) for name in signals)
        await RisingEdge(dut.ap_clk)
        if done:
            return


async def lite_write(dut, offset: int, value: int) -> None:
    dut.s_axi_ctrl_awaddr.value = offset
    dut.s_axi_ctrl_wdata.value = value & MASK32
    dut.s_axi_ctrl_wstrb.value = 0xF
    dut.s_axi_ctrl_awvalid.value = 1
    dut.s_axi_ctrl_wvalid.value = 1
    dut.s_axi_ctrl_bready.value = 0
    await until(dut, "s_axi_ctrl_awready", "s_axi_ctrl_wready")
    dut.s_axi_ctrl_awvalid.value = 0
    dut.s_axi_ctrl_wvalid.value = 0
    dut.s_axi_ctrl_bready.value = 1
    await until(dut, "s_axi_ctrl_bvalid")
    dut.s_axi_ctrl_bready.value = 0


async def lite_read(dut, offset: int) -> int:
    dut.s_axi_ctrl_araddr.value = offset
    dut.s_axi_ctrl_arvalid.value = 1
    await until(dut, "s_axi_ctrl_arready")
    dut.s_axi_ctrl_arvalid.value = 0
    dut.s_axi_ctrl_rready.value = 1
    while True:
        await ReadOnly()
        value = int(dut.s_axi_ctrl_rdata.value) if int(dut.s_axi_ctrl_rvalid.value) else None
        await RisingEdge(dut.ap_clk)
        if value is not None:
            break
    dut.s_axi_ctrl_rready.value = 0
    return value


async def run_batch(
    dut, words: list[int], n_results: int, gap_p: float, stall_p: float, rng: random.Random, max_cycles: int
) -> list[tuple[int, int]]:
    """MM2S words in with random gaps, S2MM results out under random backpressure."""
    results, i = [], 0
    for _ in range(max_cycles):
        offer = i < len(words) and rng.random() >= gap_p
        dut.s_axis_tvalid.value = int(offer)
        dut.s_axis_tdata.value = words[i] if offer else 0
        dut.s_axis_tlast.value = int(offer and i == len(words) - 1)
        dut.m_axis_tready.value = int(rng.random() >= stall_p)
        await ReadOnly()
        if offer and int(dut.s_axis_tready.value):
            i += 1
        if int(dut.m_axis_tvalid.value) and int(dut.m_axis_tready.value):
            results.append((int(dut.m_axis_tdata.value), int(dut.m_axis_tlast.value)))
        await RisingEdge(dut.ap_clk)
        if len(results) == n_results and i == len(words):
            break
    dut.s_axis_tvalid.value = 0
    dut.m_axis_tready.value = 1
    for _ in range(50):  # nothing more may come out
        await ReadOnly()
        if int(dut.m_axis_tvalid.value):
            results.append((int(dut.m_axis_tdata.value), int(dut.m_axis_tlast.value)))
        await RisingEdge(dut.ap_clk)
    return results


@cocotb.test()
async def axi_ip(dut):
    cfg = json.loads(os.environ["AXI_IP_CFG"])
    Clock(dut.ap_clk, 10, unit="ns").start()
    for name in (
        "s_axi_ctrl_awvalid",
        "s_axi_ctrl_wvalid",
        "s_axi_ctrl_bready",
        "s_axi_ctrl_arvalid",
        "s_axi_ctrl_rready",
        "s_axis_tvalid",
        "s_axis_tdata",
        "s_axis_tlast",
        "m_axis_tready",
        "s_axi_ctrl_awaddr",
        "s_axi_ctrl_wdata",
        "s_axi_ctrl_wstrb",
        "s_axi_ctrl_araddr",
    ):
        getattr(dut, name).value = 0
    dut.ap_rst_n.value = 0
    for _ in range(3):
        await RisingEdge(dut.ap_clk)
    dut.ap_rst_n.value = 1
    rng = random.Random(cfg["seed"])
    out = {"batches": []}
    for batch in cfg["batches"]:
        read_before = {str(o): await lite_read(dut, o) for o in batch["read"]}
        for offset, value in batch["writes"]:
            await lite_write(dut, offset, value)
        read_after = {str(o): await lite_read(dut, o) for o in batch["read"]}
        results = await run_batch(
            dut, batch["words"], batch["samples"], batch["gap_p"], batch["stall_p"], rng, cfg["max_cycles"]
        )
        out["batches"].append({"results": results, "read_before": read_before, "read_after": read_after})
    out["status"] = await lite_read(dut, cfg["status_offset"])
    with open(cfg["out"], "w") as f:
        json.dump(out, f)
