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
from eehw.hwplan import DesignPlan, DwcStage, FifoStage, HwBlock, MvuStage, PoolStage, RequantStage, WindowStage
from eehw.timing import Timing, chain, single_beat, streaming
from eehw.paths import shipped
from eehw.policies import PolicyName, PolicyParams, pow2_sum_bits
from eehw.rtl_weights import write_bias_memory, write_weight_memory

TAG_W = 16
HARDWARE_POLICIES = {PolicyName.MARGIN: 0, PolicyName.MAX_SOFTMAX_POW2: 1}
BLOCK_LIBRARY = ("round_shift_sat.v", "requant.v", "mvu.v", "sliding_window.v", "maxpool.v", "dwc.v", "axis_fifo.v")
LIBRARY = [*BLOCK_LIBRARY, "decision_unit.v", "axis_fork.v", "exit_gate.v", "exit_merge.v"]


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


# Handshake latencies of the library modules, as their headers state them (and as rtl_sim/tests
# measure).
REQUANT_LATENCY = 1
FIFO_LATENCY = 1  # axis_fifo.v: first and last beat, empty FIFO
FORK_LATENCY = 1
GATE_FORWARD_LATENCY = 1  # exit_gate.v: decision handshake -> first forwarded feature beat
GATE_RESULT_LATENCY = 1  # exit_gate.v: decision handshake -> m_res beat
MERGE_LATENCY = 1


def mvu_timing(stage: MvuStage) -> Timing:
    """mvu.v header: a vector of SF = IN/SIMD beats, II = SF*NF cycles per vector; NF = 1
    computes each beat as it arrives (first beat out SF + 3 cycles after the vector's first,
    last 4 after its last), NF > 1 buffers the vector in a ping-pong memory (first SF*NF + SF + 3,
    last SF*NF + 4 on an idle unit). Over a sample of several vectors the last one can also wait
    for the previous vector's SF*NF cycles, which the drain allows for."""
    sf = stage.in_n // stage.folding.simd
    nf = stage.out_n // stage.folding.pe
    ii = stage.vector_ii
    first = sf + 3 if nf == 1 else ii + sf + 3
    total = first + (stage.positions - 1) * ii  # first input beat -> last output, input at full rate
    drain = 4 if nf == 1 else (ii + 4 if stage.positions == 1 else 2 * ii - sf + 4)
    return Timing.stage(first, total - drain, drain, stage.in_beats)


def _ending(span: int, last_latency: int) -> tuple[int, int]:
    """(span, drain) for a stage whose last output can leave before its last input (floor-mode
    pooling or a window that drops trailing rows): the drain is then 0 and the span ends there."""
    return (span, last_latency) if last_latency >= 0 else (span + last_latency, 0)


def window_timing(stage: WindowStage) -> Timing:
    """sliding_window.v header: a scan of the padded map, one step a cycle, waiting at a window
    position until the previous window's NB beats have left."""
    kh = stage.k if stage.dims == 2 else 1
    wp = stage.width + 2 * stage.pad
    out_h, out_w = stage.out_hw
    nb = stage.window // stage.simd
    wins = [(kh - 1 + oh * stage.stride) * wp + stage.k - 1 + ow * stage.stride
            for oh in range(out_h) for ow in range(out_w)]
    loads = [wins[0]]
    for a, b in zip(wins, wins[1:]):
        loads.append(loads[-1] + max(nb, b - a))

    def step_edge(step: int) -> int:
        if step <= wins[0]:
            return step
        j = max(i for i, w in enumerate(wins) if w <= step)
        return loads[j] + step - wins[j]

    ph = stage.pad if stage.dims == 2 else 0
    last_pixels = [r * wp + x for r in range(ph, ph + stage.height) for x in range(stage.pad, stage.pad + stage.width)][-2:]
    last_in = step_edge(last_pixels[0]) + 1 if len(last_pixels) == 2 else 0
    span, drain = _ending(last_in, loads[-1] + nb - last_in)
    return Timing.stage(wins[0] + 1, span, drain, stage.in_beats)


def pool_timing(stage: PoolStage) -> Timing:
    """maxpool.v header: one input beat a cycle; a pooled pixel leaves when its window's last
    input arrives."""
    kh = stage.k if stage.dims == 2 else 1
    out_h, out_w = stage.out_hw
    n = stage.in_beats
    last = (out_h * kh - 1) * stage.width + out_w * stage.k - 1 - n + 2
    span, drain = _ending(n - 1, last)
    return Timing.stage((kh - 1) * stage.width + stage.k, span, drain, stage.in_beats)


def dwc_timing(stage: DwcStage) -> Timing:
    """dwc.v header: splitting a beat into R sends one a cycle (first 1 cycle after the input,
    the last R after the last input); gathering R beats sends the result 1 cycle after the R-th."""
    if stage.in_n > stage.out_n:
        r = stage.in_n // stage.out_n
        return Timing.stage(1, (stage.in_beats - 1) * r, r, stage.in_beats)
    return Timing.stage(stage.out_n // stage.in_n, stage.in_beats - 1, 1, stage.in_beats)


def stage_timing(stage) -> Timing:
    """One stage's timing (eehw.timing) from its module header's formulas."""
    if isinstance(stage, MvuStage):
        return mvu_timing(stage)
    if isinstance(stage, WindowStage):
        return window_timing(stage)
    if isinstance(stage, PoolStage):
        return pool_timing(stage)
    if isinstance(stage, DwcStage):
        return dwc_timing(stage)
    if isinstance(stage, FifoStage):
        return streaming(FIFO_LATENCY, stage.beats)
    return streaming(REQUANT_LATENCY, stage.beats)


def block_timing(block: HwBlock) -> Timing:
    return chain(stage_timing(s) for s in block.stages)


def block_latency(block: HwBlock) -> int:
    """First input beat -> last output beat of one sample through an idle block."""
    return block_timing(block).latency


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
        """Cycles from a sample's first input beat to its result, for a sample that reaches the
        final exit on an idle pipeline (eehw.timing.exit_paths)."""
        return exit_paths(self.plan, self.decision.latency)[-1].latency

    @property
    def res_w(self) -> int:
        exit_w = max(1, (len(self.plan.exits) - 1).bit_length())
        return self.decision.dec_w - 1 + exit_w


def template_env() -> jinja2.Environment:
    """The templates of rtl_sim/templates, rendered strictly."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(shipped("rtl_sim") / "templates")),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _stage_view(stage, mem_dir: Path) -> dict:
    """What the block template needs of one stage: module, parameters, output beat width."""
    if isinstance(stage, MvuStage):
        stem = stage.name.replace(".", "_")
        weight_file = mem_dir / f"{stem}_w.mem"
        bias_file = mem_dir / f"{stem}_b.mem"
        write_weight_memory(weight_file, stage.weight, stage.folding.simd, stage.folding.pe, stage.w_w)
        write_bias_memory(bias_file, stage.bias, stage.folding.pe, stage.b_w)
        params = stage.params(f'"{weight_file.resolve()}"', f'"{bias_file.resolve()}"')
        comment = (f"{stage.name}: {stage.in_n}->{stage.out_n}, SIMD {stage.folding.simd}, PE {stage.folding.pe}, "
                   f"{stage.vector_ii} cycles per vector, {stage.positions} vector(s) per sample, "
                   f"weights {stage.w_style.value}")
    elif isinstance(stage, RequantStage):
        params = stage.params
        comment = f"{stage.name}: requantise {stage.n} x {stage.in_w} -> {stage.out_w} bits, shift {stage.shift}"
    else:
        params = stage.params
        comment = f"{stage.name}: {stage.module} {params}"
    return {"module": stage.module, "params": params, "comment": comment,
            "out_bits": stage.out_beat * stage.out_w}


def _render_block(env: jinja2.Environment, block: HwBlock, out_dir: Path) -> Path:
    if not block.stages:
        raise EehwError(f"{block.name}: nothing to compute in hardware")
    stages = [_stage_view(s, out_dir) for s in block.stages]
    path = out_dir / f"{block.module}.v"
    path.write_text(env.get_template("block.v.j2").render(block=block, stages=stages, tag_w=TAG_W))
    return path


def decision_format(plan: DesignPlan, params: PolicyParams) -> DecisionFormat:
    if params.name not in HARDWARE_POLICIES:
        raise EehwError(f"policy '{params.name.value}' has no hardware decision unit; "
                        f"use margin or max_softmax_pow2 in the config's policy.name")
    final = plan.heads[plan.exits[-1]]
    widths = {plan.heads[k].out_w for k in plan.exits}
    if len(widths) != 1 or any((plan.heads[k].out_beat, plan.heads[k].out_beats) != (final.out_beat, 1) for k in plan.exits):
        raise EehwError("every exit head needs the same number of classes and logit width for one result stream")
    return DecisionFormat(params.name, final.out_beat, final.out_w, params.frac_bits)


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
                "buffer_depth": buffer_depth(block_timing(plan.heads[position]).drain, block, fmt.latency),
            }
        blocks.append({"hw": block, "exit": exit_view})
    top = f"eehw_{plan.name}_top"
    design = RtlDesign(plan, out_dir, top, tuple(), fmt, TAG_W)
    text = env.get_template("ee_top.v.j2").render(
        plan=plan, blocks=blocks, top=top, tag_w=TAG_W, in_bits=plan.blocks[0].in_bits, res_w=design.res_w,
        n_exits=n_exits, thr_w=fmt.thr_w, dec_w=fmt.dec_w, gate_queue=GATE_QUEUE_SAMPLES)
    top_path = out_dir / f"{top}.v"
    top_path.write_text(text)
    sources.append(top_path)
    (out_dir / f"{top}.f").write_text("".join(f"{p.resolve()}\n" for p in sources))
    return RtlDesign(plan, out_dir, top, tuple(sources), fmt, TAG_W)


# Samples a conditional buffer queues in front of the next block. The DSE folds a block reached
# by a fraction p of samples to about 1/p of the first block's rate (throughput min 1/(p II)),
# which holds only on average: with room for one sample, every burst of non-exiting samples
# stalls the backbone before the gate. Eight samples of features (block RAM for the large maps)
# and eight decisions (LUTRAM) absorb the bursts of a random exit sequence.
GATE_QUEUE_SAMPLES = 8


def buffer_depth(head_drain: int, block: HwBlock, decision_latency: int) -> int:
    """Beats a conditional buffer holds: GATE_QUEUE_SAMPLES of the block's samples (at least the
    whole sample: the head decides only after its last beat, so less would deadlock the fork),
    plus the beats the block can send while the head drains and the decision unit decides, plus
    the fork's and gate's registers; rounded up to a power of two (the depths the DSE
    characterises)."""
    wait = head_drain + decision_latency + FORK_LATENCY + GATE_FORWARD_LATENCY
    beats = GATE_QUEUE_SAMPLES * block.out_beats + -(-wait * block.out_beats // max(1, block.ii)) + 2
    depth = 4
    while depth < beats:
        depth *= 2
    return depth


def exit_paths(plan: DesignPlan, decision_latency: int) -> list[Timing]:
    """Timing from a sample's first input beat to each exit's result (in plan.exits order) on an
    idle design: the backbone up to the exit, its fork, head and decision unit, and at every
    earlier exit the wait for that exit's decision (the gate forwards the sample only then)."""
    paths, segment = [], []
    dec = single_beat(decision_latency)
    for position, block in enumerate(plan.blocks):
        segment.append(block_timing(block))
        if position not in plan.heads:
            continue
        final = position == plan.exits[-1]
        head = block_timing(plan.heads[position])
        to_decision = chain([*segment, *([] if final else [streaming(FORK_LATENCY, block.out_beats)]), head, dec])
        if final:
            paths.append(to_decision.then(single_beat(MERGE_LATENCY)))
        else:
            paths.append(to_decision.then(single_beat(GATE_RESULT_LATENCY)).then(single_beat(MERGE_LATENCY)))
            # the gate forwards the whole sample after the decision: one input beat, out_beats out
            segment = [to_decision, Timing.stage(GATE_FORWARD_LATENCY, 0, GATE_FORWARD_LATENCY + block.out_beats - 1, 1)]
    return paths
