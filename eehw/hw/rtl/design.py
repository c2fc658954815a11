"""Verilog generation: a DesignPlan becomes per-block modules, memory files and the
early-exit top, rendered from the Jinja2 templates in rtl_sim/templates (StrictUndefined, so a
missing value fails here rather than writing a broken file).
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2

from eehw.errors import EehwError
from eehw.hw.plan import TAG_W, DecisionFormat, DesignPlan, decision_format
from eehw.hw.rtl.weights import write_bias_memory, write_weight_memory
from eehw.hw.stages import HwBlock, MvuStage, RequantStage
from eehw.hw.timing import (
    FORWARD_QUEUE_SAMPLES,
    GATE_DECISIONS,
    block_timing,
    buffer_depth,
    queue_depth,
    worst_case_latency,
)
from eehw.paths import shipped
from eehw.policy.policies import PolicyParams


def hdl_dir() -> Path:
    return shipped("rtl_sim") / "hdl"


def hdl_sources(name: str) -> list[Path]:
    """The library files a module needs, dependencies first: ``<name>.f`` in rtl_sim/hdl when it
    exists (one file per line, ``.v`` or another ``.f``; ``#`` starts a comment), else
    ``<name>.v``. The one place HDL dependencies are read, so a new dependency is one line in a
    ``.f`` file."""
    flist = hdl_dir() / f"{name}.f"
    if not flist.exists():
        path = hdl_dir() / f"{name}.v"
        if not path.exists():
            raise EehwError(f"RTL library incomplete: {name}.v missing from {hdl_dir()}")
        return [path]
    out: list[Path] = []
    for line in flist.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        paths = hdl_sources(entry.removesuffix(".f")) if entry.endswith(".f") else [hdl_dir() / entry]
        for path in paths:
            if not path.exists():
                raise EehwError(
                    f"RTL library incomplete: {path.name} (listed in {flist.name}) missing from {hdl_dir()}"
                )
            if path not in out:
                out.append(path)
    return out


@dataclass(frozen=True)
class RtlDesign:
    plan: DesignPlan
    out_dir: Path
    top: str
    sources: tuple[Path, ...]
    decision: DecisionFormat
    tag_w: int

    @property
    def latency_bound(self) -> int:
        """Cycles from a sample's first input beat to its result, for samples sent one at a
        time to the final exit: the measured worst case, beat for beat
        (eehw.hw.timing.worst_case_latency). The DSE composes the upper bound
        ``exit_paths(...)[-1].latency`` instead, which it is never above."""
        return worst_case_latency(self.plan, self.decision)

    @property
    def res_w(self) -> int:
        exit_w = max(1, (len(self.plan.exits) - 1).bit_length())
        return self.decision.dec_w - 1 + exit_w


@functools.cache
def template_env() -> jinja2.Environment:
    """The templates of rtl_sim/templates, rendered strictly (one environment, so each template
    is compiled once a process: a random model's design rendered in 0.08 s less)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(shipped("rtl_sim") / "templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _stage_view(stage, mem_dir: Path) -> dict:
    """What the block template needs of one stage: module, parameters, output beat width."""
    if isinstance(stage, MvuStage):
        stem = stage.name.replace(".", "_")
        weight_file = mem_dir / f"{stem}_w.mem"
        bias_file = mem_dir / f"{stem}_b.mem"
        write_weight_memory(weight_file, stage.weight, stage.folding.simd, stage.folding.pe, stage.w_w)
        write_bias_memory(bias_file, stage.bias, stage.folding.pe, stage.b_w)
        params = stage.params(f'"{weight_file.resolve()}"', f'"{bias_file.resolve()}"')
        comment = (
            f"{stage.name}: {stage.in_n}->{stage.out_n}, SIMD {stage.folding.simd}, PE {stage.folding.pe}, "
            f"{stage.vector_ii} cycles per vector, {stage.positions} vector(s) per sample, "
            f"weights {stage.w_style.value}"
        )
    elif isinstance(stage, RequantStage):
        params = stage.params
        comment = f"{stage.name}: requantise {stage.n} x {stage.in_w} -> {stage.out_w} bits, shift {stage.shift}"
    else:
        params = stage.params
        comment = f"{stage.name}: {stage.module} {params}"
    return {"module": stage.module, "params": params, "comment": comment, "out_bits": stage.out_beat * stage.out_w}


def _render_block(env: jinja2.Environment, block: HwBlock, out_dir: Path) -> Path:
    if not block.stages:
        raise EehwError(f"{block.name}: nothing to compute in hardware")
    stages = [_stage_view(s, out_dir) for s in block.stages]
    path = out_dir / f"{block.module}.v"
    path.write_text(env.get_template("block.v.j2").render(block=block, stages=stages, tag_w=TAG_W))
    return path


def generate(plan: DesignPlan, params: PolicyParams, out_dir: Path, all_exits: list[int]) -> RtlDesign:
    """Write the RTL of ``plan`` into ``out_dir`` (replaced whole, so no stale file survives).

    ``all_exits`` are the candidate exits of the trained model, to look up each kept exit's
    policy constants (pow2 shift) by its position.
    """
    fmt = decision_format(plan, params)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    env = template_env()
    sources = hdl_sources("ee_top")
    for block in list(plan.blocks) + [plan.heads[k] for k in plan.exits]:
        sources.append(_render_block(env, block, out_dir))
    n_exits = len(plan.exits)
    blocks = []
    for position, block in enumerate(plan.blocks):
        exit_view = None
        if position in plan.heads:
            k = plan.exits.index(position)
            final = k == n_exits - 1
            shift = params.shift(all_exits.index(position))
            head = plan.heads[position]
            decision = fmt.verilog_params(shift, fmt.serial_fits(head.ii))
            exit_view = {
                "index": k,
                "final": final,
                "hw": plan.heads[position],
                "decision": decision,
                "threshold_expr": f"{fmt.thr_w}'d{fmt.always_exit}"
                if final
                else f"threshold[{k}*{fmt.thr_w} +: {fmt.thr_w}]",
                "enable_expr": "1'b1" if final else f"enable[{k}]",
                "buffer_depth": buffer_depth(block_timing(head).drain, block, fmt.latency_after(head.ii)),
                "queue_depth": queue_depth(block),
            }
        blocks.append({"hw": block, "exit": exit_view})
    top = f"eehw_{plan.name}_top"
    design = RtlDesign(plan, out_dir, top, tuple(), fmt, TAG_W)
    text = env.get_template("ee_top.v.j2").render(
        plan=plan,
        blocks=blocks,
        top=top,
        tag_w=TAG_W,
        in_bits=plan.blocks[0].in_bits,
        res_w=design.res_w,
        n_exits=n_exits,
        thr_w=fmt.thr_w,
        dec_w=fmt.dec_w,
        gate_decisions=GATE_DECISIONS,
        queue_samples=FORWARD_QUEUE_SAMPLES,
    )
    top_path = out_dir / f"{top}.v"
    top_path.write_text(text)
    sources.append(top_path)
    (out_dir / f"{top}.f").write_text("".join(f"{p.resolve()}\n" for p in sources))
    return RtlDesign(plan, out_dir, top, tuple(sources), fmt, TAG_W)
