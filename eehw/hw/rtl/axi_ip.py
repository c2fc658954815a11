"""The project's own RTL top as the deployable accelerator: the alternative to the hls4ml IPs.

The design eehw simulates (Verilator) and synthesises (Yosys) sits behind an AXI wrapper
(rtl_sim/templates/axi_top.v.j2): DMA words in, one 64-bit result word per sample out, TLAST
on the batch's last result, thresholds and batch size in AXI4-Lite registers. The word layouts
and register map are those of the HLS top (eehw.hw.hls.top), so ``EarlyExitOverlay`` drives either
bitstream from its ``register_map.json``. Per design this writes, under ``<out_dir>``:

- ``<top>_axi.v``: the wrapper, the IP's top module;
- ``vivado/eehw_bd.tcl``: packages wrapper + RTL as an IP (``ipx::package_project``), then the
  same PS7 + AXI DMA block design and implementation as the HLS variant;
- ``vivado/register_map.json``: addresses and the flow's threshold values.

The wrapper is written here rather than taken from a library because its registers and word
layout are the driver's contract with the HLS top, which no AXI library knows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from eehw.board import Board
from eehw.deploy.pynq_driver import register_value
from eehw.errors import EehwError
from eehw.hw.block_design import (
    ENABLE_BIT,
    INPUT_WORD_BITS,
    REGISTER_OFFSET,
    RESULT_FIELDS,
    check_shell,
    write_block_design,
)
from eehw.hw.hls.top import TopDesign
from eehw.hw.rtl.design import RtlDesign, template_env

ADDR_W = 8  # AXI4-Lite address bits: registers 0x00..0xFF
STATUS_OFFSET = 0x14  # bit 0: sticky tag-check error (read only)
EXIT_OFFSET = 0x20  # early exit k's register at EXIT_OFFSET + 4k
CELL = "eehw_rtl_0"


@dataclass(frozen=True)
class RtlIpFiles:
    wrapper: Path
    top: str  # the wrapper's module name, the IP's name
    tcl: Path
    register_map: Path


def exit_offset(k: int) -> int:
    return EXIT_OFFSET + 4 * k


def _zext(expr: str, width: int, total: int) -> str:
    """``expr`` (``width`` bits) zero-extended to ``total`` bits, as a Verilog expression."""
    if width > total:
        raise EehwError(f"a {width}-bit result field does not fit the {total} bits of the result word")
    return expr if width == total else f"{{{total - width}'d0, {expr}}}"


def wrapper_source(rtl: RtlDesign, design: TopDesign) -> tuple[str, str]:
    """(module name, Verilog) of the AXI wrapper around ``rtl``'s top."""
    first = rtl.plan.blocks[0]
    n_exits = len(rtl.plan.exits)
    fmt = rtl.decision
    if (first.in_bits, first.in_beats) != (design.input.elements * design.input.bits, design.input.beats):
        raise EehwError(
            f"{rtl.top}: its input beat ({first.in_bits} bits, {first.in_beats} per sample) is not the "
            f"driver's ({design.input.elements} x {design.input.bits} bits, {design.input.beats} per sample)"
        )
    if exit_offset(n_exits - 2) >= 1 << ADDR_W:
        raise EehwError(f"{rtl.top}: {n_exits - 1} early exits do not fit the wrapper's register space")
    if rtl.tag_w != RESULT_FIELDS["tag"][1]:
        raise EehwError(f"{rtl.top}: a {rtl.tag_w}-bit tag is not the result word's {RESULT_FIELDS['tag'][1]} bits")
    exit_w = rtl.res_w - fmt.class_w - fmt.conf_w
    words = math.ceil(first.in_bits / INPUT_WORD_BITS)
    module = f"{rtl.top}_axi"
    text = (
        template_env()
        .get_template("axi_top.v.j2")
        .render(
            ip=module,
            top=rtl.top,
            addr_w=ADDR_W,
            exit_base=EXIT_OFFSET,
            n_exits=n_exits,
            thr_w=fmt.thr_w,
            resets=[register_value(t, k, fmt.thr_w, ENABLE_BIT) for k, t in enumerate(design.thresholds)],
            words=words,
            word_w=max(1, (words - 1).bit_length()),
            beats=first.in_beats,
            beat_w=max(1, (first.in_beats - 1).bit_length()),
            in_bits=first.in_bits,
            element_bits=design.input.bits,
            res_w=rtl.res_w,
            exit_w=exit_w,
            class_w=fmt.class_w,
            conf_w=fmt.conf_w,
            zext=_zext,
        )
    )
    return module, text


def write_rtl_ip(rtl: RtlDesign, design: TopDesign, board: Board, out_dir: Path, jobs: int = 2) -> RtlIpFiles:
    """Write the wrapper, the packaging + block-design Tcl and the register map of ``rtl``."""
    check_shell(board)
    if tuple(design.exits) != tuple(rtl.plan.exits):
        raise EehwError(
            f"{rtl.top}: the top description has exits {list(design.exits)}, the RTL {list(rtl.plan.exits)}"
        )
    module, text = wrapper_source(rtl, design)
    out_dir = Path(out_dir)
    viv_dir = out_dir / "vivado"
    viv_dir.mkdir(parents=True, exist_ok=True)
    wrapper = out_dir / f"{module}.v"
    wrapper.write_text(text)
    cells = [{"name": CELL, "vlnv": f"eehw.org:eehw:{module}:1.0"}]
    links = [
        {"src": "axi_dma_0", "src_port": "M_AXIS_MM2S", "dst": CELL, "dst_port": "s_axis"},
        {"src": CELL, "src_port": "m_axis", "dst": "axi_dma_0", "dst_port": "S_AXIS_S2MM"},
    ]
    registers = [{"cell": CELL, "offset": REGISTER_OFFSET, "what": "batch_size"}]
    registers += [
        {"cell": CELL, "offset": exit_offset(k), "what": "exit", "exit": k} for k in range(len(rtl.plan.exits) - 1)
    ]
    package = {"top": module, "sources": [str(p.resolve()) for p in (*rtl.sources, wrapper)]}
    tcl, register_map = write_block_design(
        viv_dir,
        design,
        board,
        cells,
        [],
        links,
        registers,
        [{"pin": f"{CELL}/ap_clk"}],
        ip_repos=("ip",),
        jobs=jobs,
        package=package,
    )
    return RtlIpFiles(wrapper, module, tcl, register_map)
