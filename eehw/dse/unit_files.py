"""The Verilog the DSE synthesises to characterise each unit: a block with its memory files
and library modules, or one glue module (decision unit, conditional buffer, fork, merge) under
a generated top (rtl_sim/templates/char_top.v.j2)."""

from __future__ import annotations

import re
from pathlib import Path

from eehw.hw.plan import TAG_W, DecisionFormat
from eehw.hw.rtl.design import hdl_sources, template_env
from eehw.hw.stages import HwBlock
from eehw.hw.timing import GATE_DECISIONS, pow2_depth

CHAR_TOP = "eehw_char_top"  # the top over a glue module (rtl_sim/templates/char_top.v.j2)
JOB_DIR = "@EEHW_DIR@"  # stands for the job's own folder in cached file texts


def _library(module: str) -> dict[str, str]:
    return {path.name: path.read_text() for path in hdl_sources(module)}


def _wrapper(module: str, params: dict[str, int], ports: list[tuple[str, str, int]], tied: dict | None = None) -> str:
    """A top that instantiates ``module`` with ``params``; every port not in ``tied`` (port ->
    constant) becomes a top port so Yosys keeps all of the logic."""
    template = template_env().get_template("char_top.v.j2")
    return template.render(module=module, params=params, ports=ports, tied=tied or {})


def decision_files(fmt: DecisionFormat, shift: int, final: bool, serial: bool) -> dict[str, str]:
    """The final exit's unit has a constant always-exit threshold and enable (as in the top),
    which synthesis folds away; an early exit's are run-time registers (top ports here)."""
    params = {**fmt.verilog_params(shift, serial), "TAG_W": TAG_W}
    ports = [
        ("input", "clk", 1),
        ("input", "rst", 1),
        ("input", "s_tdata", fmt.num_classes * fmt.logit_w),
        ("input", "s_tvalid", 1),
        ("output", "s_tready", 1),
        ("input", "s_tuser", TAG_W),
        ("input", "threshold", fmt.thr_w),
        ("input", "enable", 1),
        ("output", "m_tdata", fmt.dec_w),
        ("output", "m_tvalid", 1),
        ("input", "m_tready", 1),
        ("output", "m_tuser", TAG_W),
    ]
    # the final exit's threshold and enable are constants, as in the top
    tied = {"threshold": f"{fmt.thr_w}'d{fmt.always_exit}", "enable": "1'b1"} if final else {}
    text = _wrapper("decision_unit", params, ports, tied)
    return {**_library("decision_unit"), f"{CHAR_TOP}.v": text}


def gate_files(feat_w: int, dec_w: int, depth: int) -> dict[str, str]:
    params = {
        "FEAT_W": feat_w,
        "DEC_W": dec_w,
        "TAG_W": TAG_W,
        "DEPTH": pow2_depth(depth),
        "DEC_DEPTH": GATE_DECISIONS,
    }
    ports = [("input", "clk", 1), ("input", "rst", 1)]
    for prefix, d, w in (
        ("s_feat", "input", feat_w),
        ("s_dec", "input", dec_w),
        ("m_feat", "output", feat_w),
        ("m_res", "output", dec_w),
    ):
        back = "output" if d == "input" else "input"
        ports += [
            (d, f"{prefix}_tvalid", 1),
            (back, f"{prefix}_tready", 1),
            (d, f"{prefix}_tdata", w),
            (d, f"{prefix}_tuser", TAG_W),
        ]
        if prefix.endswith("feat"):
            ports.append((d, f"{prefix}_tlast", 1))
    ports.append(("output", "error", 1))
    return {**_library("exit_gate"), f"{CHAR_TOP}.v": _wrapper("exit_gate", params, ports)}


def queue_files(width: int, depth: int) -> dict[str, str]:
    """The forward queue after a conditional buffer (axis_fifo.v, its memory style by size)."""
    ports = [("input", "clk", 1), ("input", "rst", 1)]
    for prefix, d in (("s", "input"), ("m", "output")):
        back = "output" if d == "input" else "input"
        ports += [
            (d, f"{prefix}_tvalid", 1),
            (back, f"{prefix}_tready", 1),
            (d, f"{prefix}_tdata", width),
            (d, f"{prefix}_tuser", TAG_W),
            (d, f"{prefix}_tlast", 1),
        ]
    params = {"W": width, "TAG_W": TAG_W, "DEPTH": pow2_depth(depth)}
    return {**_library("axis_fifo"), f"{CHAR_TOP}.v": _wrapper("axis_fifo", params, ports)}


def fork_files(width: int) -> dict[str, str]:
    ports = [
        ("input", "clk", 1),
        ("input", "rst", 1),
        ("input", "s_tvalid", 1),
        ("output", "s_tready", 1),
        ("input", "s_tdata", width),
        ("input", "s_tuser", TAG_W),
        ("input", "s_tlast", 1),
        ("output", "m_tvalid", 2),
        ("input", "m_tready", 2),
        ("output", "m_tdata", 2 * width),
        ("output", "m_tuser", 2 * TAG_W),
        ("output", "m_tlast", 2),
    ]
    return {**_library("axis_fork"), f"{CHAR_TOP}.v": _wrapper("axis_fork", {"W": width, "TAG_W": TAG_W}, ports)}


def merge_files(k: int, dec_w: int) -> dict[str, str]:
    idx_w = max(1, (k - 1).bit_length())
    ports = [
        ("input", "clk", 1),
        ("input", "rst", 1),
        ("input", "s_tvalid", k),
        ("output", "s_tready", k),
        ("input", "s_tdata", k * dec_w),
        ("input", "s_tuser", k * TAG_W),
        ("output", "m_tvalid", 1),
        ("input", "m_tready", 1),
        ("output", "m_tdata", dec_w - 1 + idx_w),
        ("output", "m_tuser", TAG_W),
    ]
    return {
        **_library("exit_merge"),
        f"{CHAR_TOP}.v": _wrapper("exit_merge", {"K": k, "DEC_W": dec_w, "TAG_W": TAG_W}, ports),
    }


def block_files(block: HwBlock, out_dir: Path) -> dict[str, str]:
    """The block's Verilog, the memory files it reads (paths made relative to the job folder)
    and the library modules it instantiates."""
    text = (out_dir / f"{block.module}.v").read_text()
    prefix = str(out_dir.resolve())
    files = _library("block")
    for mem in sorted(set(re.findall(r'"([^"]+\.mem)"', text))):
        files[Path(mem).name] = Path(mem).read_text()
    files[f"{block.module}.v"] = text.replace(prefix, JOB_DIR)
    return files
