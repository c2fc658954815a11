"""The Vivado shell around either accelerator (the HLS top's IPs or the packaged RTL top): the
PS7 + AXI DMA block design, the AXI-Lite segments, and the register map the PYNQ driver reads.
One interface for both, so one driver serves either bitstream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from eehw.board import Board
from eehw.deploy.pynq_driver import register_value
from eehw.errors import EehwError
from eehw.hw.hls.decision import jinja_env
from eehw.hw.plan import TAG_W
from eehw.policy.policies import PolicyName

if TYPE_CHECKING:
    from eehw.hw.hls.top import TopDesign

INPUT_WORD_BITS = 32
RESULT_WORD_BITS = 64
RESULT_FIELDS = {"confidence": (0, 32), "class": (32, 8), "exit": (40, 8), "tag": (48, TAG_W)}
"""Bit offset and width of each field of a result word (eehw_result_word in eehw_top_ips.cpp)."""
REGISTER_OFFSET = 0x10  # pinned by `offset=0x10` in every s_axilite pragma of the top's IPs
ENABLE_BIT = 31
DMA_BASE = 0x4040_0000
LITE_BASE = 0x43C0_0000
LITE_STRIDE = 0x1_0000


def write_block_design(
    viv_dir: Path,
    design: TopDesign,
    board: Board,
    cells,
    fifos,
    links,
    registers,
    clocked,
    *,
    ip_repos,
    jobs: int,
    package: dict | None = None,
) -> tuple[Path, Path]:
    """``eehw_bd.tcl`` and ``register_map.json`` in ``viv_dir`` for an accelerator of ``cells``:
    the HLS top's IPs, or the packaged RTL top (``package``: its top and sources, eehw.hw.rtl.axi_ip).
    ``registers`` (cell, offset, what[, exit]) get the addresses of their cell's 64K segment."""
    fclk = board.shell.get("fclk_mhz", board.clock_mhz)
    bases: dict[str, str] = {}  # each AXI-Lite cell's segment, in order of its first register
    for r in registers:
        bases.setdefault(r["cell"], f"0x{LITE_BASE + len(bases) * LITE_STRIDE:08X}")
    slaves = [{"cell": cell, "base": base} for cell, base in bases.items()]
    tcl = viv_dir / "eehw_bd.tcl"
    tcl.write_text(
        jinja_env()
        .get_template("vivado/eehw_bd.tcl.j2")
        .render(
            d={"name": design.name, "input_word_bits": INPUT_WORD_BITS},
            board=board,
            fclk_mhz=_num(fclk),
            board_part=board.shell.get("board_part"),
            cells=cells,
            fifos=fifos,
            links=links,
            lite=slaves,
            clocked=clocked,
            dma_base=f"0x{DMA_BASE:08X}",
            jobs=int(jobs),
            ip_repos=ip_repos,
            package=package,
        )
    )
    register_map = viv_dir / "register_map.json"
    located = [dict(r, base=bases[r["cell"]]) for r in registers]
    register_map.write_text(json.dumps(_register_map(design, board, located), indent=2) + "\n")
    return tcl, register_map


def check_shell(board: Board) -> None:
    """The block-design template's shell: a Zynq-7000 PS with an AXI DMA."""
    if board.shell.get("type") != "zynq7":
        raise EehwError(
            f"board {board.name}: the block-design template supports Zynq-7000 (shell type "
            f"zynq7) only, got {board.shell.get('type')!r}"
        )
    if not board.shell.get("axi_dma", False):
        raise EehwError(f"board {board.name}: the multi-exit top needs shell.axi_dma: true")


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _register_map(design: TopDesign, board: Board, located) -> dict:
    """Everything the driver needs to talk to the overlay, in one JSON document."""
    fmt = design.fmt
    registers = []
    for r in located:
        entry = {
            "cell": r["cell"],
            "base": r["base"],
            "offset": f"0x{r['offset']:02X}",
            "address": f"0x{int(r['base'], 16) + r['offset']:08X}",
            "what": r["what"],
        }
        if r["what"] == "exit":
            t = design.thresholds[r["exit"]]
            entry.update(
                exit=r["exit"],
                threshold_bits=fmt.thr_w,
                enable_bit=ENABLE_BIT,
                threshold=t,
                value=f"0x{register_value(t, r['exit'], fmt.thr_w, ENABLE_BIT):08X}",
            )
        registers.append(entry)
    return {
        "design": design.name,
        "board": board.name,
        "part": board.part,
        "dma": {"cell": "axi_dma_0", "base": f"0x{DMA_BASE:08X}", "hier": "axi_dma_0"},
        "input": {
            "word_bits": INPUT_WORD_BITS,
            "words_per_beat": design.input_words_per_beat,
            "beats_per_sample": design.input.beats,
            "elements_per_beat": design.input.elements,
            "element_bits": design.input.bits,
            "element_signed": design.input_signed,
        },
        "output": {
            "word_bits": RESULT_WORD_BITS,
            "fields": {k: {"offset": o, "bits": w} for k, (o, w) in RESULT_FIELDS.items()},
        },
        "decision": {
            "policy": PolicyName(fmt.policy).value,
            "num_classes": fmt.num_classes,
            "logit_bits": fmt.logit_w,
            "frac_bits": fmt.frac_bits,
            "shifts": list(design.shifts),
            "confidence_bits": fmt.conf_w,
            "threshold_bits": fmt.thr_w,
        },
        "exits": [
            {"index": k, "after_block": design.blocks[p], "head": h}
            for k, (p, h) in enumerate(zip(design.exits, design.heads))
        ],
        "registers": registers,
    }
