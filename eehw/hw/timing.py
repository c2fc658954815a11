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

Where a stage's input beats are known to come at least ``gap`` cycles apart (``chain_gaps``:
an exit head or a block behind a block that sends a pooled pixel every few cycles), the first
output that needs ``needs`` beats is at most ``first - (needs - 1) - (in_beats - needs) * gap``
after the last input beat. ``segment_timings`` applies it to the blocks between two gates and
the head after them (a segment starts with a burst: the design's input or a forward queue).
A stage that waits on another stage's pace is bounded with it: a sliding window and the MVU
it feeds are one max-plus stage (``window_mvu_timing``), since a folded MVU behind a strided
window queues a whole row of windows.

This is the DSE's model: an upper bound that composes from characterised units. A generated
design states its worst case beat by beat instead (``worst_case_latency``, eehw.hw.beats),
which the simulation meets to the cycle: the flow stops when the measurement is above it
(eehw.hw.measure), and the random-model property test requires the two to be equal on 200
models and the composed bound never to be below them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eehw.hw.beats import NEVER, Chain, ExitGate, Register, Window, window_pairs
from eehw.hw.plan import DecisionFormat, DesignPlan
from eehw.hw.stages import DwcStage, FifoStage, HwBlock, MvuStage, PoolStage, WindowStage


@dataclass(frozen=True)
class Timing:
    """first_out = max(f + ff, l + fl); last_out = max(f + lf, l + ll)."""

    ff: int
    fl: int
    lf: int
    ll: int

    @classmethod
    def stage(cls, first: int, span: int, drain: int, in_beats: int, gap: int = 1, needs: int = 1) -> "Timing":
        """``needs``: input beats the first output waits for (it leaves ``first - (needs - 1)``
        cycles after the last of them); ``gap``: fewest cycles between input beats, so that one
        is at least ``(in_beats - needs) * gap`` before the sample's last input beat."""
        return cls(first, first - (needs - 1) - max(0, in_beats - needs) * gap, span + drain, drain)

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


def streaming(cycles: int, beats: int, gap: int = 1) -> Timing:
    """A register stage on a stream of ``beats`` beats, one a cycle (requant, fork)."""
    return Timing.stage(cycles, beats - 1, cycles, beats, gap)


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


def mvu_timing(stage: MvuStage, gap: int = 1) -> Timing:
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
    return Timing.stage(first, total - drain, drain, stage.in_beats, gap, needs=sf)


def _ending(span: int, last_latency: int) -> tuple[int, int]:
    """(span, drain) for a stage whose last output can leave before its last input (floor-mode
    pooling or a window that drops trailing rows): the drain is then 0 and the span ends there."""
    return (span, last_latency) if last_latency >= 0 else (span + last_latency, 0)


def window_timing(stage: WindowStage, gap: int = 1) -> Timing:
    """sliding_window.v header: a scan of the padded map, one step a cycle, waiting at a window
    position until the previous window's NB beats have left. The first window needs the input
    pixels up to its last one that is not padding."""
    nb = stage.window // stage.simd
    wins = stage.window_steps
    loads = [wins[0]]
    for a, b in zip(wins, wins[1:]):
        loads.append(loads[-1] + max(nb, b - a))

    def step_edge(step: int) -> int:
        if step <= wins[0]:
            return step
        j = max(i for i, w in enumerate(wins) if w <= step)
        return loads[j] + step - wins[j]

    last_pixels = stage.pixel_steps[-2:]
    last_in = step_edge(last_pixels[0]) + 1 if len(last_pixels) == 2 else 0
    span, drain = _ending(last_in, loads[-1] + nb - last_in)
    edge = stage.k - 1 - stage.pad  # the first window's last real row and column
    needs = (edge * stage.width if stage.dims == 2 else 0) + min(stage.width, edge + 1)
    return Timing.stage(wins[0] + 1, span, drain, stage.in_beats, gap, needs=max(1, needs))


def pool_timing(stage: PoolStage, gap: int = 1) -> Timing:
    """maxpool.v header: one input beat a cycle (FOLD beats a pixel); each beat of a pooled
    pixel leaves when the same fold of its window's last input arrives."""
    kh = stage.k if stage.dims == 2 else 1
    out_h, out_w = stage.out_hw
    fold, n = stage.fold, stage.in_beats
    last = ((out_h * kh - 1) * stage.width + out_w * stage.k - 1) * fold + fold - 1 - n + 2
    span, drain = _ending(n - 1, last)
    first = ((kh - 1) * stage.width + stage.k - 1) * fold + 1
    return Timing.stage(first, span, drain, stage.in_beats, gap, needs=first)


def dwc_timing(stage: DwcStage, gap: int = 1) -> Timing:
    """dwc.v header: splitting a beat into R sends one a cycle (first 1 cycle after the input,
    the last R after the last input); gathering R beats sends the result 1 cycle after the R-th."""
    if stage.in_n > stage.out_n:
        # It takes a beat every R cycles: beats offered faster than that queue up, and with the
        # first one early and the rest gap apart at the end the last leaves (n-2)*(R-gap) late.
        r, n = stage.in_n // stage.out_n, stage.in_beats
        return Timing(1, 1 - (n - 1) * gap, n * r, r + max(0, n - 2) * max(0, r - gap))
    r = stage.out_n // stage.in_n
    return Timing.stage(r, stage.in_beats - 1, 1, stage.in_beats, gap, needs=r)


def _window_mvu_run(w: WindowStage, m: MvuStage, arrivals: list[int]) -> tuple[int, int]:
    """(first, last) output edge of a sliding window feeding an MVU for input beats offered at
    ``arrivals`` on idle modules (eehw.hw.beats.Window). A window that drops trailing input
    (floor mode) can send its last beat before the last input pixel; the stage still ends no
    earlier than that pixel is consumed, so that a bound ending at a result also covers every
    stage being done with the sample (the next one finds them idle)."""
    pair = Window(w, m)
    _, outs = pair.feed(arrivals)
    assert len(outs) == m.positions, (w.name, m.name)
    return outs[0], max(outs[-1], pair.consumed)


def window_mvu_timing(w: WindowStage, m: MvuStage, gap: int = 1) -> Timing:
    """A convolution (sliding window then MVU) as one stage. Apart, the MVU's drain would have
    to allow for a whole row of windows queued behind a folded MVU (the windows of a row come
    STRIDE pixels apart, faster than II, after the rows a stride skips left the MVU idle:
    random model seed 183, 69 cycles against a 65-cycle bound taken stage by stage). Both modules
    only ever wait for an input or for each other (max and plus), so the output edges are a
    max-plus function of the input beats' edges, and inputs offered no earlier than at full rate
    from the first beat f or no later than ``gap`` apart up to the last beat l give
    out <= max(f + out(full rate from 0), l + out(gap apart, ending at 0))."""
    n = w.in_beats
    ff, lf = _window_mvu_run(w, m, list(range(n)))
    fl, ll = _window_mvu_run(w, m, [-(n - 1 - i) * gap for i in range(n)])
    return Timing(ff, fl, lf, ll)


def stages_timing(stages, gaps) -> Timing:
    """A chain of stages at their input gaps, a sliding window and the MVU it feeds taken as one."""
    gaps = list(gaps)
    return chain(
        window_mvu_timing(s, mvu, gaps[i]) if mvu else stage_timing(s, gaps[i]) for i, s, mvu in window_pairs(stages)
    )


@dataclass(frozen=True)
class ForkStage:
    """axis_fork.v as a stage of an exit path (it passes each beat on as it comes)."""

    beats: int


def stage_timing(stage, gap: int = 1) -> Timing:
    """One stage's timing from its module header's formulas, its input beats at least ``gap``
    cycles apart (the sliding window's scan is taken at full rate whatever the gap)."""
    if isinstance(stage, MvuStage):
        return mvu_timing(stage, gap)
    if isinstance(stage, WindowStage):
        return window_timing(stage, gap)
    if isinstance(stage, PoolStage):
        return pool_timing(stage, gap)
    if isinstance(stage, DwcStage):
        return dwc_timing(stage, gap)
    if isinstance(stage, FifoStage):
        return streaming(FIFO_LATENCY, stage.beats, gap)
    if isinstance(stage, ForkStage):
        return streaming(FORK_LATENCY, stage.beats, gap)
    return streaming(REQUANT_LATENCY, stage.beats, gap)


# Beat spacing. A stage's ``fl`` term assumes its input beats may all come back to back at the
# end of the sample. Behind a block they cannot: block 0 of mnist1d_cnn sends a pooled pixel every
# 2 cycles at best, so a width converter that splits each into 2 beats for a channel-folded pool
# never backs up, yet at gap 1 the bound charged the head 15 cycles for that backlog; a block fed
# by a pooling block sees a pixel every 16 cycles, not a burst. The spacing at an interface is the
# upstream's natural output spacing while nothing downstream stalls it before the sample's last
# input beat is in; a stage that stalls by its own pace (a splitting converter takes a beat every
# R cycles) takes beats no closer than that, and one whose output may be stalled may see a burst.
# A spacing is (gap, group): the fewest cycles between beats, and between the first beats of
# consecutive windows (a sliding window's NB beats leave back to back, its windows are further
# apart; for any other stream each beat is its own group).


def out_spacing(stage, gap: int, group: int) -> tuple[int, int]:
    """A stage's output spacing while its output is free, its input at (gap, group)."""
    if isinstance(stage, MvuStage):
        sf = stage.in_n // stage.folding.simd
        o = max(stage.vector_ii, group, sf * gap)  # one beat a vector
        return o, o
    if isinstance(stage, WindowStage):
        # The windows follow their pixels (one per stride pixels along a row), but padding sends
        # windows back to back: a 2-D window's right padding at every row end, a 1-D window's
        # trailing padding after the last input (a spacing holds up to the sample's last beat:
        # random model seed 184, whose 1-D padded window sent its last two windows a cycle apart
        # into a block taken as fed 4 apart, measured 3 cycles over).
        nb = stage.window // stage.simd
        if stage.pad:
            return 1, nb
        return 1, max(nb, stage.stride * gap if stage.dims == 1 else gap)
    if isinstance(stage, PoolStage):
        o = gap if stage.fold > 1 else stage.k * gap  # windows do not overlap (stride K)
        return o, o
    if isinstance(stage, DwcStage):
        o = 1 if stage.in_n > stage.out_n else (stage.out_n // stage.in_n) * gap
        return o, o
    return gap, group


def accept_gap(stage) -> int:
    """Fewest cycles between the input beats a stage takes (a splitting converter: one every R)."""
    if isinstance(stage, DwcStage) and stage.in_n > stage.out_n:
        return stage.in_n // stage.out_n
    return 1


def keeps_pace(stage, gap: int, group: int) -> bool:
    """Whether a stage whose output is free never stalls input at (gap, group) before the sample's
    last input beat. sliding_window.v waits at a window until the previous window's NB beats have
    left (and at a 2-D row end for its padding windows and steps); mvu.v with NF = 1 keeps
    s_tready high, with NF > 1 holds two vectors, so vectors at least II apart never wait, the
    third one's bank being free by then (with the pipeline's 4 cycles to spare)."""
    if isinstance(stage, WindowStage):
        nb = stage.window // stage.simd
        return gap >= (nb if stage.dims == 1 else (1 + stage.pad) * nb + 2 * stage.pad)
    if isinstance(stage, MvuStage):
        sf = stage.in_n // stage.folding.simd
        if stage.positions == 1 or sf == stage.vector_ii:
            return True
        v = max(group, sf * gap)
        return v >= stage.vector_ii and 2 * v >= sf + stage.vector_ii + 4
    return gap >= accept_gap(stage)


def chain_gaps(stages, gap: int = 1, free_tail: bool = True) -> tuple[list[int], tuple[int, int]]:
    """The input gap each stage of a chain can count on, and the chain's output spacing while its
    output is free, for input beats ``gap`` apart (gap 1: a burst, as a forward queue sends).
    ``free_tail``: nothing after the chain stalls it within a sample (a head's decision unit
    takes its one beat); otherwise every stage may see a burst."""
    stages = list(stages)
    stalled = [False] * len(stages) + [not free_tail]  # stalled[i]: stage i's input may be stalled
    while True:
        gaps, spacings, (g, grp) = [], [], (gap, gap)
        for i, s in enumerate(stages):
            if stalled[i + 1]:
                g, grp = 1, 1
            elif not keeps_pace(s, g, grp):
                g, grp = min(g, accept_gap(s)), min(grp, accept_gap(s))
            gaps.append(g)
            spacings.append((g, grp))
            g, grp = out_spacing(s, g, grp)
        again = list(stalled)
        for i in reversed(range(len(stages))):
            again[i] = again[i + 1] or not keeps_pace(stages[i], *spacings[i])
        if again == stalled:
            return gaps, (g, grp)
        stalled = again


def segment_timings(blocks: list[HwBlock], head: HwBlock, fork_beats: int = 0) -> tuple[list[Timing], Timing]:
    """Directly connected blocks (fed by a burst: the design's input or a forward queue) and the
    exit head after the last of them, behind its fork for an early exit (``fork_beats``: the
    block's beats a sample; the fork's other side, the conditional buffer, holds a whole sample):
    each block's Timing and the fork + head's, every stage at the spacing it can count on."""
    parts = [list(b.stages) for b in blocks] + [([ForkStage(fork_beats)] if fork_beats else []) + list(head.stages)]
    gaps = iter(chain_gaps([s for part in parts for s in part])[0])
    timings = [stages_timing(part, [next(gaps) for _ in part]) for part in parts]
    return timings[:-1], timings[-1]


def block_timing(block: HwBlock) -> Timing:
    """A block on its own, every stage taken with bursts (its output may be stalled): the
    conservative figure, which sizes the conditional buffers."""
    return stages_timing(block.stages, [1] * len(block.stages))


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
    paths, segment, start = [], [], 0
    for position, block in enumerate(plan.blocks):
        if position not in plan.heads:
            continue
        final = position == plan.exits[-1]
        blocks, head = segment_timings(
            plan.blocks[start : position + 1], plan.heads[position], 0 if final else block.out_beats
        )
        dec = single_beat(fmt.latency_after(plan.heads[position].ii))
        to_decision = chain([*segment, *blocks, head, dec])
        start = position + 1
        if final:
            paths.append(to_decision.then(single_beat(MERGE_LATENCY)))
        else:
            paths.append(to_decision.then(single_beat(GATE_RESULT_LATENCY)).then(single_beat(MERGE_LATENCY)))
            # the gate forwards the whole sample after the decision (one input beat, out_beats
            # out) into the forward queue
            segment = [to_decision, gate_forward(block.out_beats), streaming(FIFO_LATENCY, block.out_beats)]
    return paths


WORST_CASE_SAMPLES = 64  # samples the beat-exact run may take to repeat its state (2 or 3 on 120 random designs)


def worst_case_latency(plan: DesignPlan, fmt: DecisionFormat) -> int:
    """The measured worst case, beat by beat (eehw.hw.beats): samples sent one at a time, each
    offered the cycle after the previous result and taken to the final exit (every earlier gate
    forwards it once its head has decided), from the first input beat's handshake to the result.
    A sample can find earlier stages still busy with the previous one's trailing work, so samples
    are run until the design's state at an offer repeats; the latency is the largest seen."""
    blocks = [Chain(b.stages) for b in plan.blocks]
    heads = {p: Chain(h.stages) for p, h in plan.heads.items()}
    forks = {p: Register(FORK_LATENCY) for p in plan.heads}
    gates = {p: ExitGate() for p in plan.heads}
    queues = {p: Register(FIFO_LATENCY) for p in plan.heads}
    models = [*blocks, *heads.values(), *forks.values(), *gates.values(), *queues.values()]
    beats, offer, worst, seen = plan.blocks[0].in_beats, 0, 0, set()
    for _ in range(WORST_CASE_SAMPLES):
        arrivals, start = [offer + i for i in range(beats)], None
        for position, block in enumerate(blocks):
            taken, arrivals = block.feed(arrivals)
            start = taken[0] if start is None else start
            if position not in plan.heads:
                continue
            final = position == plan.exits[-1]
            forked = arrivals if final else forks[position].feed(arrivals)[1]  # to the head and the buffer
            _, logits = heads[position].feed(forked)
            decision = logits[-1] + fmt.latency_after(plan.heads[position].ii)
            if final:
                result = decision + MERGE_LATENCY
                break
            arrivals = queues[position].feed(gates[position].forward(forked, decision))[1]
        worst, offer = max(worst, result - start), result + 1
        state = tuple(m.state(offer) for m in models)
        if state in seen:
            break
        seen.add(state)
    return worst
