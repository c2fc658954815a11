"""Verilog generation: a DesignPlan becomes per-block modules, memory files and the
early-exit top, rendered from the Jinja2 templates in rtl_sim/templates (StrictUndefined, so a
missing value fails here rather than writing a broken file).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2

from eehw.errors import EehwError
from eehw.hwplan import DesignPlan, HwBlock, MvuStage, RequantStage, WindowStage
from eehw.paths import shipped
from eehw.policies import PolicyName, PolicyParams, pow2_sum_bits
from eehw.rtl_weights import write_bias_memory, write_weight_memory

TAG_W = 16
HARDWARE_POLICIES = {PolicyName.MARGIN: 0, PolicyName.MAX_SOFTMAX_POW2: 1}
LIBRARY = ["round_shift_sat.v", "requant.v", "mvu.v", "sliding_window.v", "collect.v", "maxpool.v",
           "decision_unit.v", "axis_fifo.v", "axis_fork.v", "exit_gate.v", "exit_merge.v"]


def hdl_dir() -> Path:
    return shipped("rtl_sim") / "hdl"


@dataclass(frozen=True)
class DecisionFormat:
    """Widths shared by every decision unit of a design (they all feed one merge)."""

    policy: PolicyName
    num_classes: int
    logit_w: int
    frac_bits: int

    @property
    def class_w(self) -> int:
        return max(1, (self.num_classes - 1).bit_length())

    @property
    def conf_w(self) -> int:
        if self.policy == PolicyName.MARGIN:
            return self.logit_w + 1  # top1 - top2 of signed logits
        return pow2_sum_bits(self.num_classes, self.frac_bits)

    @property
    def thr_w(self) -> int:
        return self.conf_w

    @property
    def dec_w(self) -> int:
        return self.conf_w + self.class_w + 1

    @property
    def latency(self) -> int:
        """decision_unit.v: clog2(N) comparison levels, then 1 (margin) or 3 (pow2) stages."""
        return (self.num_classes - 1).bit_length() + (1 if self.policy == PolicyName.MARGIN else 3)

    @property
    def always_exit(self) -> int:
        """A threshold every sample passes: margin >= 0, S <= all ones."""
        return 0 if self.policy == PolicyName.MARGIN else (1 << self.thr_w) - 1


# Handshake-to-handshake latencies of the library modules, as their headers state them (and as
# rtl_sim/tests measure): fork, exit gate and merge are one register each.
FORK_LATENCY = 1
GATE_LATENCY = 1
MERGE_LATENCY = 1


def stage_latency(stage) -> int:
    """Input handshake to output handshake of one sample on an idle stage."""
    if isinstance(stage, MvuStage):
        # mvu.v: LATENCY = II + 5; a convolution's positions follow each other II cycles apart.
        return stage.positions * stage.ii + 5
    return stage.latency  # requant, maxpool, collect: 1; sliding_window: 2 (to its first window)


def block_latency(block: HwBlock) -> int:
    return sum(stage_latency(s) for s in block.stages)


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
        """Cycles from input to result for a sample that reaches the final exit on an idle
        pipeline: every block, and at each early exit the fork, head, decision unit and gate
        (the features wait in the gate for the decision), then the final head, decision, merge."""
        plan, d = self.plan, self.decision.latency
        total = sum(block_latency(b) for b in plan.blocks)
        for position in plan.exits[:-1]:
            total += FORK_LATENCY + block_latency(plan.heads[position]) + d + GATE_LATENCY
        return total + block_latency(plan.heads[plan.exits[-1]]) + d + MERGE_LATENCY

    @property
    def res_w(self) -> int:
        exit_w = max(1, (len(self.plan.exits) - 1).bit_length())
        return self.decision.dec_w - 1 + exit_w


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(shipped("rtl_sim") / "templates")),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _stage_view(stage, mem_dir: Path, after_window: bool) -> dict:
    """What the block template needs of one stage: module, parameters and how its tag is wired."""
    s_tuser, tag_extra = "PREV_tuser", 0
    if isinstance(stage, MvuStage):
        stem = stage.name.replace(".", "_")
        weight_file = mem_dir / f"{stem}_w.mem"
        bias_file = mem_dir / f"{stem}_b.mem"
        write_weight_memory(weight_file, stage.weight, stage.folding.simd, stage.folding.pe, stage.w_w)
        write_bias_memory(bias_file, stage.bias, stage.folding.pe, stage.b_w)
        params = stage.params(f'"{weight_file.resolve()}"', f'"{bias_file.resolve()}"')
        comment = (f"{stage.name}: {'conv' if after_window else 'dense'} {stage.in_n}->{stage.out_n}, "
                   f"SIMD {stage.folding.simd}, PE {stage.folding.pe}, II {stage.ii}"
                   + (f" per position, {stage.positions} positions" if after_window else ""))
        if after_window:  # carry the window's tlast above the tag to collect
            s_tuser, tag_extra = "{PREV_tlast, PREV_tuser}", 1
    elif isinstance(stage, RequantStage):
        params = stage.params
        comment = f"{stage.name}: requantise {stage.n} x {stage.in_w} -> {stage.out_w} bits, shift {stage.shift}"
    else:
        params = stage.params
        comment = f"{stage.name}: {stage.module} {params}"
    return {"module": stage.module, "params": params, "comment": comment, "s_tuser": s_tuser,
            "tag_extra": tag_extra, "user_extra": tag_extra, "out_bits": stage.out_n * stage.out_w}


def _render_block(env: jinja2.Environment, block: HwBlock, out_dir: Path) -> Path:
    if not block.stages:
        raise EehwError(f"{block.name}: nothing to compute in hardware")
    stages = [_stage_view(s, out_dir, i > 0 and isinstance(block.stages[i - 1], WindowStage))
              for i, s in enumerate(block.stages)]
    path = out_dir / f"{block.module}.v"
    path.write_text(env.get_template("block.v.j2").render(block=block, stages=stages, tag_w=TAG_W))
    return path


def decision_format(plan: DesignPlan, params: PolicyParams) -> DecisionFormat:
    if params.name not in HARDWARE_POLICIES:
        raise EehwError(f"policy '{params.name.value}' has no hardware decision unit; "
                        f"use margin or max_softmax_pow2 in the config's policy.name")
    final = plan.heads[plan.exits[-1]]
    widths = {plan.heads[k].out_w for k in plan.exits}
    if len(widths) != 1 or any(plan.heads[k].out_n != final.out_n for k in plan.exits):
        raise EehwError("every exit head needs the same number of classes and logit width for one result stream")
    return DecisionFormat(params.name, final.out_n, final.out_w, params.frac_bits)


def generate(plan: DesignPlan, params: PolicyParams, out_dir: Path, all_exits: list[int]) -> RtlDesign:
    """Write the RTL of ``plan`` into ``out_dir`` (replaced whole, so no stale file survives).

    ``all_exits`` are the candidate exits of the trained model, to look up each kept exit's
    policy constants (pow2 shift) by its position.
    """
    fmt = decision_format(plan, params)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    env = _env()
    sources = [hdl_dir() / name for name in LIBRARY]
    missing = [p.name for p in sources if not p.exists()]
    if missing:
        raise EehwError(f"RTL library incomplete: {', '.join(missing)} missing from {hdl_dir()}")
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
            decision = {"N_CLASSES": fmt.num_classes, "LOGIT_W": fmt.logit_w,
                        "POLICY": HARDWARE_POLICIES[fmt.policy], "SHIFT": shift, "FRAC_BITS": fmt.frac_bits,
                        "THR_W": fmt.thr_w}
            exit_view = {
                "index": k, "final": final, "hw": plan.heads[position], "decision": decision,
                "threshold_expr": f"{fmt.thr_w}'d{fmt.always_exit}" if final else f"threshold[{k}*{fmt.thr_w} +: {fmt.thr_w}]",
                "enable_expr": "1'b1" if final else f"enable[{k}]",
                "buffer_depth": buffer_depth(plan.heads[position], block),
            }
        blocks.append({"hw": block, "exit": exit_view})
    top = f"eehw_{plan.name}_top"
    design = RtlDesign(plan, out_dir, top, tuple(), fmt, TAG_W)
    text = env.get_template("ee_top.v.j2").render(
        plan=plan, blocks=blocks, top=top, tag_w=TAG_W, in_bits=plan.blocks[0].in_bits, res_w=design.res_w,
        n_exits=n_exits, thr_w=fmt.thr_w, dec_w=fmt.dec_w)
    top_path = out_dir / f"{top}.v"
    top_path.write_text(text)
    sources.append(top_path)
    (out_dir / f"{top}.f").write_text("".join(f"{p.resolve()}\n" for p in sources))
    return RtlDesign(plan, out_dir, top, tuple(sources), fmt, TAG_W)


def buffer_depth(head: HwBlock, block: HwBlock) -> int:
    """Features a conditional buffer must hold while the head and decision unit decide:
    at most one sample enters per block II, so the head's pipeline length over that II, plus
    slack for the fork and the gate's own registers."""
    head_cycles = sum(getattr(s, "ii", 1) + 4 for s in head.stages) + 8
    return max(4, -(-head_cycles // max(1, block.ii)) + 4)
