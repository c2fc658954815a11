"""Latency of a streamed sample: each stage's timing as its module header states it, and how
stages compose into a block, a head and a whole exit path.

A sample is many beats and stages overlap (a convolution's MVU starts on the first window while
the line buffer is still filling), so a stage is described by how its first and last output
beats follow its first and last input beats, for one sample on an idle stage whose output is
always ready:

- ``first``: first input beat -> first output beat, input at full rate;
- ``span``: first -> last input beat when the input is always there (the stage's own pace: a
  folded MVU takes a window every (IN/SIMD)*(OUT/PE) cycles);
- ``drain``: last input beat -> last output beat, the most it can be whatever the input timing;
- the first output needs some input beats, and at most one beat arrives a cycle, so however
  late the input comes its first output is at most ``first - (in_beats - 1)`` after its last
  input beat (for a stage with one output beat, a dense layer, that is its drain).

With f and l the cycles of a sample's first and last input beat at a stage (l as its upstream
would deliver it unblocked), the stage takes its last beat at max(l, f + span), so

    first out <= max(f + first, l + first - (in_beats - 1)),  last out <= max(l, f + span) + drain.

Both are max-plus linear in (f, l): a 2x2 max-plus matrix per stage, and a chain is the matrix
product, so a block, a head and a whole exit path are each one ``Timing``, and the DSE composes
its characterised units the way the generator composes stages (``compose_arrays``). For a chain
fed at full rate from cycle 0 the latency (first input beat -> last output beat) is ``lf``. It
is an upper bound; where one stage dominates and the rest stream at full rate it is exact, and
the simulation measures the true figure either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eehw.hw.plan import DecisionFormat, DesignPlan
from eehw.hw.stages import DwcStage, FifoStage, HwBlock, MvuStage, PoolStage, WindowStage

NEVER = -(1 << 40)  # "no dependence" in the max-plus matrices (minus infinity, kept an integer)


@dataclass(frozen=True)
class Timing:
    """first_out = max(f + ff, l + fl); last_out = max(f + lf, l + ll)."""

    ff: int
    fl: int
    lf: int
    ll: int

    @classmethod
    def stage(cls, first: int, span: int, drain: int, in_beats: int) -> "Timing":
        return cls(first, first - (in_beats - 1), span + drain, drain)

    @property
    def latency(self) -> int:
        """First input beat -> last output beat of a chain fed at full rate."""
        return self.lf

    @property
    def drain(self) -> int:
        """Last input beat -> last output beat."""
        return self.ll

    def then(self, nxt: "Timing") -> "Timing":
        return Timing(
            max(self.ff + nxt.ff, self.lf + nxt.fl),
            max(self.fl + nxt.ff, self.ll + nxt.fl),
            max(self.ff + nxt.lf, self.lf + nxt.ll),
            max(self.fl + nxt.lf, self.ll + nxt.ll),
        )

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.ff, self.fl, self.lf, self.ll


IDENTITY = Timing(0, NEVER, NEVER, 0)


def chain(parts) -> Timing:
    """Stages in stream order as one Timing (an empty chain passes beats through untouched)."""
    total = IDENTITY
    for part in parts:
        total = total.then(part)
    return total


def single_beat(cycles: int) -> Timing:
    """One beat in, one beat out ``cycles`` later (decision unit, merge)."""
    return Timing.stage(cycles, 0, cycles, 1)


def streaming(cycles: int, beats: int) -> Timing:
    """A register stage on a stream of ``beats`` beats, one a cycle (requant, fork)."""
    return Timing.stage(cycles, beats - 1, cycles, beats)


def compose_arrays(a: tuple, b: tuple) -> tuple:
    """Timing.then on arrays of (ff, fl, lf, ll), one entry per candidate design (the DSE)."""
    aff, afl, alf, all_ = a
    bff, bfl, blf, bll = b
    return (
        np.maximum(aff + bff, alf + bfl),
        np.maximum(afl + bff, all_ + bfl),
        np.maximum(aff + blf, alf + bll),
        np.maximum(afl + blf, all_ + bll),
    )


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
    wins = [
        (kh - 1 + oh * stage.stride) * wp + stage.k - 1 + ow * stage.stride
        for oh in range(out_h)
        for ow in range(out_w)
    ]
    loads = [wins[0]]
    for a, b in zip(wins, wins[1:]):
        loads.append(loads[-1] + max(nb, b - a))

    def step_edge(step: int) -> int:
        if step <= wins[0]:
            return step
        j = max(i for i, w in enumerate(wins) if w <= step)
        return loads[j] + step - wins[j]

    ph = stage.pad if stage.dims == 2 else 0
    last_pixels = [r * wp + x for r in range(ph, ph + stage.height) for x in range(stage.pad, stage.pad + stage.width)][
        -2:
    ]
    last_in = step_edge(last_pixels[0]) + 1 if len(last_pixels) == 2 else 0
    span, drain = _ending(last_in, loads[-1] + nb - last_in)
    return Timing.stage(wins[0] + 1, span, drain, stage.in_beats)


def pool_timing(stage: PoolStage) -> Timing:
    """maxpool.v header: one input beat a cycle (FOLD beats a pixel); each beat of a pooled
    pixel leaves when the same fold of its window's last input arrives."""
    kh = stage.k if stage.dims == 2 else 1
    out_h, out_w = stage.out_hw
    fold, n = stage.fold, stage.in_beats
    last = ((out_h * kh - 1) * stage.width + out_w * stage.k - 1) * fold + fold - 1 - n + 2
    span, drain = _ending(n - 1, last)
    return Timing.stage(((kh - 1) * stage.width + stage.k - 1) * fold + 1, span, drain, stage.in_beats)


def dwc_timing(stage: DwcStage) -> Timing:
    """dwc.v header: splitting a beat into R sends one a cycle (first 1 cycle after the input,
    the last R after the last input); gathering R beats sends the result 1 cycle after the R-th."""
    if stage.in_n > stage.out_n:
        r = stage.in_n // stage.out_n
        return Timing.stage(1, (stage.in_beats - 1) * r, r, stage.in_beats)
    return Timing.stage(stage.out_n // stage.in_n, stage.in_beats - 1, 1, stage.in_beats)


def stage_timing(stage) -> Timing:
    """One stage's timing (eehw.hw.timing) from its module header's formulas."""
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


# A conditional buffer holds the sample its head is deciding; the samples it forwards queue
# after it, in a FIFO of FORWARD_QUEUE_SAMPLES samples in front of the next block. The DSE folds
# a block reached by a fraction p of samples to about 1/p of the first block's rate (throughput
# min 1/(p II)), which holds only on average: bursts of non-exiting samples must wait somewhere.
# Queued inside the gate they would also hold up the exiting samples behind them (the gate pops
# in order), so the gate would need p II + (1 - p) L cycles a sample (fmnist_cnn, p = 0.23:
# 979 of a 900-cycle budget, measured 984); queued after it, only forwarded samples wait and
# the gate pops every sample in L cycles. Eight samples keep the loss of a random exit sequence
# near 1 % at p II = 0.92 of the first block's II (a queue simulation; 12 % with room for one).
FORWARD_QUEUE_SAMPLES = 8
GATE_DECISIONS = 8  # decisions a gate queues (LUTRAM): one per sample its buffer can hold


def buffer_depth(head_drain: int, block: HwBlock, decision_latency: int) -> int:
    """Beats a conditional buffer holds: the whole sample (the head decides only after its last
    beat, so less would deadlock the fork), plus the beats the block can send while the head
    drains and the decision unit decides, plus the fork's and gate's registers; rounded up to a
    power of two (the depths the DSE characterises)."""
    wait = head_drain + decision_latency + FORK_LATENCY + GATE_FORWARD_LATENCY
    return pow2_depth(block.out_beats + -(-wait * block.out_beats // max(1, block.ii)) + 2)


def queue_depth(block: HwBlock) -> int:
    """Beats of the FIFO after a conditional buffer: FORWARD_QUEUE_SAMPLES of the block's samples."""
    return pow2_depth(FORWARD_QUEUE_SAMPLES * block.out_beats)


def pow2_depth(beats: int) -> int:
    """FIFO depths are powers of two (>= 4): the LUT-RAM and pointer logic change at those steps,
    so the DSE characterises those and a composed design rounds up."""
    depth = 4
    while depth < beats:
        depth *= 2
    return depth


def gate_forward(beats: int) -> Timing:
    """exit_gate.v from the decision to the forwarded sample's beats (its features already held)."""
    return Timing.stage(GATE_FORWARD_LATENCY, 0, GATE_FORWARD_LATENCY + beats - 1, 1)


def exit_paths(plan: DesignPlan, fmt: DecisionFormat) -> list[Timing]:
    """Timing from a sample's first input beat to each exit's result (in plan.exits order) on an
    idle design: the backbone up to the exit, its fork, head and decision unit, and at every
    earlier exit the wait for that exit's decision (the gate forwards the sample only then)."""
    paths, segment = [], []
    for position, block in enumerate(plan.blocks):
        segment.append(block_timing(block))
        if position not in plan.heads:
            continue
        final = position == plan.exits[-1]
        head = block_timing(plan.heads[position])
        dec = single_beat(fmt.latency_after(plan.heads[position].ii))
        to_decision = chain([*segment, *([] if final else [streaming(FORK_LATENCY, block.out_beats)]), head, dec])
        if final:
            paths.append(to_decision.then(single_beat(MERGE_LATENCY)))
        else:
            paths.append(to_decision.then(single_beat(GATE_RESULT_LATENCY)).then(single_beat(MERGE_LATENCY)))
            # the gate forwards the whole sample after the decision (one input beat, out_beats
            # out) into the forward queue
            segment = [to_decision, gate_forward(block.out_beats), streaming(FIFO_LATENCY, block.out_beats)]
    return paths
