"""The single-block cocotb harness (eehw/hw/rtl/block_sim.py, rtl_sim/harness/block_tb.py) on the
project's own generated blocks, against the golden integer model block by block, under random
input gaps and output backpressure; and on a small hand-written block with known faults, to
show the harness catches lost, duplicated and unstable beats.
"""

import numpy as np
import pytest

from eehw import flow
from eehw.errors import EehwError
from eehw.hw import timing
from eehw.hw.rtl.block_sim import BURST, design_block_sources, simulate_block
from eehw.hw.rtl.sim import simulate


@pytest.fixture(scope="module")
def mlp():
    return flow.run("digits_mlp", board="pynq-z2", stop_after="rtl")


def _beats(x: np.ndarray) -> np.ndarray:
    """Golden tensors (channels-first) as beat rows (channels-last, flattened)."""
    x = np.asarray(x, dtype=np.int64)
    if x.ndim > 2:
        x = np.moveaxis(x, 1, -1)
    return x.reshape(len(x), -1)


def _golden_io(design, name: str, x_float: np.ndarray):
    """Integers entering and leaving golden block or head ``name`` (block 0's input quantiser
    runs before the hardware, so its input is the quantised sample)."""
    g = design.golden
    h_in, h = g.quantize_input(x_float), x_float
    for k, block in enumerate(g.blocks):
        if block.name == name:
            return h_in, block(h)
        h = h_in = block(h)
        if k in g.heads and g.heads[k].name == name:
            return h, g.heads[k](h)
    raise AssertionError(f"{name} not in the golden model")


def _simulate(rtl, hw, x_in, **kwargs):
    """One generated block or head of ``rtl`` on its own, fed golden tensors ``x_in``."""
    return simulate_block(
        design_block_sources(rtl, hw.module),
        hw.module,
        _beats(x_in),
        hw.in_w,
        hw.out_beat,
        hw.out_w,
        hw.out_signed,
        in_beats=hw.in_beats,
        out_beats=hw.out_beats,
        **kwargs,
    )


def _run_block(design, hw, **kwargs):
    x_in, expected = _golden_io(design, hw.name, design.data.x_test)
    return _simulate(design.rtl["early_exit"], hw, x_in, **kwargs), _beats(expected)


def _check(result, expected, hw):
    assert result.stream_ok, (result.duplicates, result.missing, result.reordered, result.stalled)
    assert not result.error_flag
    bad = np.flatnonzero((result.outputs != expected).any(axis=1))
    assert len(bad) == 0, f"{hw.name}: {len(bad)} of {len(expected)} samples differ from golden, first {bad[:5]}"
    burst = min(BURST, len(expected))
    assert np.array_equal(result.burst_outputs, expected[:burst])
    # Back to back, one sample leaves per II of the slowest stage (HwBlock.ii).
    assert result.ii == hw.ii, (result.ii, hw.ii, result.ii_intervals)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["blocks.1", "heads.0"])
def test_mlp_block_and_head_equal_golden_under_gaps_and_stalls(mlp, which):
    """blocks.1 (requant + folded MVU) and heads.0 (signed 16-bit logits), every test sample."""
    plan = mlp.rtl["early_exit"].plan
    hw = next(b for b in [*plan.blocks, *plan.heads.values()] if b.name == which)
    result, expected = _run_block(mlp, hw, gap_p=0.3, stall_p=0.4, seed=3)
    assert result.samples == len(mlp.data.x_test)
    _check(result, expected, hw)


@pytest.mark.slow
def test_cnn_conv_block_equals_golden_under_gaps_and_stalls():
    design = flow.run("digits_cnn", board="pynq-z2", stop_after="rtl")
    plan = design.rtl["early_exit"].plan
    # The fastest block that holds a sliding window, conv MVU and max pool.
    hw = min(
        (b for b in plan.blocks if {"sliding_window", "maxpool"} <= {s.module for s in b.stages}), key=lambda b: b.ii
    )
    x = design.data.x_test
    x_in, expected = _golden_io(design, hw.name, x)
    rtl = design.rtl["early_exit"]
    result = simulate_block(
        design_block_sources(rtl, hw.module),
        hw.module,
        _beats(x_in),
        hw.in_w,
        hw.out_beat,
        hw.out_w,
        hw.out_signed,
        gap_p=0.2,
        stall_p=0.3,
        seed=5,
        in_beats=hw.in_beats,
        out_beats=hw.out_beats,
    )
    _check(result, _beats(expected), hw)


FAULTY = """
`default_nettype none
// A register slice that adds 1 to each byte, with one fault chosen by MODE:
// 1 loses every 4th sample, 2 changes its output while stalled, 3 sends every 4th sample twice.
module faulty_block #(parameter integer TAG_W = 16, parameter integer MODE = 0) (
    input  wire clk, input wire rst,
    input  wire [7:0] s_tdata, input wire s_tvalid, output wire s_tready, input wire [TAG_W-1:0] s_tuser,
    output reg  [7:0] m_tdata, output reg m_tvalid, input wire m_tready, output reg [TAG_W-1:0] m_tuser,
    output wire error
);
    reg [1:0] count;
    reg dup;
    assign s_tready = !m_tvalid || (m_tready && !dup);
    assign error = 1'b0;
    always @(posedge clk) begin
        if (rst) begin
            m_tvalid <= 1'b0; count <= 2'd0; dup <= 1'b0; m_tdata <= 8'd0; m_tuser <= {TAG_W{1'b0}};
        end else begin
            if (s_tvalid && s_tready) begin
                count <= count + 2'd1;
                m_tdata <= s_tdata + 8'd1;
                m_tuser <= s_tuser;
                m_tvalid <= !(MODE == 1 && count == 2'd3);
                dup <= MODE == 3 && count == 2'd3;
            end else if (m_tready && m_tvalid) begin
                if (dup) dup <= 1'b0;
                else m_tvalid <= 1'b0;
            end
            if (MODE == 2 && m_tvalid && !m_tready) m_tdata <= m_tdata ^ 8'd1;
        end
    end
endmodule
`default_nettype wire
"""


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    path = tmp_path_factory.mktemp("faulty") / "faulty_block.v"
    path.write_text(FAULTY)
    return path


N_FAULTY = 40


def _faulty_run(faulty, mode, **kwargs):
    x = np.arange(N_FAULTY, dtype=np.int64).reshape(-1, 1) * 5 % 255
    result = simulate_block([faulty], "faulty_block", x, 8, 1, 8, False, params={"MODE": mode}, **kwargs)
    return x, result


@pytest.mark.slow
def test_a_correct_slice_passes_and_measures_ii_1(faulty):
    x, result = _faulty_run(faulty, 0, gap_p=0.3, stall_p=0.3, seed=1)
    assert result.stream_ok and not result.error_flag
    assert np.array_equal(result.outputs[:, 0], x[:, 0] + 1)
    assert result.ii == 1.0
    assert result.latency.min() == 1  # one register: handshake in, handshake out the next cycle


@pytest.mark.slow
def test_lost_and_duplicated_samples_and_unstable_beats_are_caught(faulty):
    _, lost = _faulty_run(faulty, 1, gap_p=0.2, stall_p=0.2, idle_limit=200)
    assert lost.stalled and lost.missing == N_FAULTY // 4 and lost.duplicates == 0
    _, dup = _faulty_run(faulty, 3, gap_p=0.2, stall_p=0.2)
    # every 4th of the random phase and of the burst comes out twice
    assert dup.duplicates == sum(i % 4 == 3 for i in range(N_FAULTY + BURST)) and dup.missing == 0
    with pytest.raises(EehwError, match="changed while stalled"):
        _faulty_run(faulty, 2, stall_p=0.5)


def test_bad_input_is_refused_with_one_line(faulty):
    x = np.zeros((3, 1), dtype=np.int64)
    with pytest.raises(EehwError, match="do not fit 8-bit"):
        simulate_block([faulty], "faulty_block", x + 300, 8, 1, 8, False)
    with pytest.raises(EehwError, match="stall_p=1.0"):
        simulate_block([faulty], "faulty_block", x, 8, 1, 8, False, stall_p=1.0)
    with pytest.raises(EehwError, match="not found"):
        simulate_block([faulty.with_name("nope.v")], "faulty_block", x, 8, 1, 8, False)
    with pytest.raises(EehwError, match="port widths"):
        simulate_block([faulty], "faulty_block", x, 8, 2, 8, False)  # 16 output bits from an 8-bit port
    with pytest.raises(EehwError, match="integers"):
        simulate_block([faulty], "faulty_block", x.astype(float), 8, 1, 8, False)


TINY_WINDOW_BOUND = """
name: tiny_window_bound
seed: 0
data: {name: digits}
model: {backbone: cnn2d, widths: [4], kernel: 3, pool: [1], exits: []}
training: {epochs: 1, batch_size: 256}
hardware:
  max_simd: 9
  folding: {blocks.0.1: {simd: 9, pe: 4}}   # the conv MVU fully parallel: one position a cycle
"""


@pytest.mark.slow
def test_conv_block_limited_by_its_sliding_window_measures_the_planned_ii(tmp_path):
    """With a fully parallel MVU the sliding window is the slowest stage: it scans the 10x10
    padded map one position a cycle, so the block takes 100 cycles a sample (64 windows), as
    planned."""
    path = tmp_path / "tiny_window_bound.yaml"
    path.write_text(TINY_WINDOW_BOUND)
    design = flow.run(path, board="pynq-z2", stop_after="rtl")
    hw = design.rtl["early_exit"].plan.blocks[0]
    assert hw.ii == 100
    result, expected = _run_block(design, hw)
    _check(result, expected, hw)


TINY_FOLDED_POOL = """
name: tiny_folded_pool
seed: 0
data: {name: digits}
model: {backbone: cnn2d, widths: [8, 8], kernel: 3, pool: [1, 1], head_pool: 2, exits: [{after: 0, head: pool_linear}]}
training: {epochs: 1, batch_size: 256}
hardware:
  max_simd: 8
  max_pe: 8
  folding: {heads.0.3: {simd: 2, pe: 5}}   # the head's dense: 2 lanes in, 5 out
"""


@pytest.mark.slow
def test_pool_before_a_narrow_dense_is_channel_folded_and_equals_golden(tmp_path):
    """A pool_linear head whose dense reads 2 of the 8 channels a beat (SF 64 x NF 2 = 128
    cycles a sample): the plan splits the pixels into 2 beats of 4 channels before the pool
    (64 pixels x 2 = 128 cycles, as slow as the dense and no slower), and the head equals the
    golden model under gaps and stalls at that II."""
    path = tmp_path / "tiny_folded_pool.yaml"
    path.write_text(TINY_FOLDED_POOL)
    design = flow.run(path, board="pynq-z2", stop_after="rtl")
    hw = design.rtl["early_exit"].plan.heads[0]
    pools = [s for s in hw.stages if s.module == "maxpool"]
    assert [(p.c, p.fold, p.in_beat) for p in pools] == [(8, 2, 4)]
    assert hw.ii == 128
    result, expected = _run_block(design, hw, gap_p=0.2, stall_p=0.3, seed=7)
    _check(result, expected, hw)

    # The whole design, every sample to the final exit one at a time: the gate waits for this
    # head's decision, so the head is on the worst-case path. The stated worst case is exact; the
    # DSE's composed bound counts on the blocks' beat spacing (eehw.hw.timing.chain_gaps): the
    # simulation must stay within it, and it must be below the one that takes every stage's input
    # as a burst (else spacing is not exercised).
    rtl = design.rtl["early_exit"]
    x_int = design.golden.quantize_input(design.data.x_test[:4])
    worst = simulate(rtl, x_int, [None] * (len(rtl.plan.exits) - 1), one_at_a_time=True)
    composed = timing.exit_paths(rtl.plan, rtl.decision)[-1].latency
    assert worst.latency.max() == rtl.latency_bound <= composed < _burst_bound(rtl)


def _burst_bound(rtl) -> int:
    """The final exit's bound with every stage's input taken as a burst (gap 1)."""
    original = timing.chain_gaps
    try:
        timing.chain_gaps = lambda stages, *args, **kwargs: ([1] * len(list(stages)), (1, 1))
        return timing.exit_paths(rtl.plan, rtl.decision)[-1].latency
    finally:
        timing.chain_gaps = original


@pytest.mark.slow
def test_a_folded_mvu_behind_a_strided_window_takes_its_stated_latency(tmp_path):
    """Random model seed 183, block 0: a 1x1 window of stride 2 on a 7x8 map sends the windows
    of a row 2 cycles apart into an MVU that needs 3 a vector (NF 3), after the skipped row left
    it idle, so a row's windows queue up (stage by stage the bound was 65 cycles, 4 short). The
    window and MVU bounded as one max-plus stage give the simulated first sample's latency."""
    import torch

    from eehw.hw.plan import plan_design
    from eehw.hw.rtl.design import generate
    from eehw.model.export import export_golden
    from eehw.random_models import build_model, policy_and_thresholds, random_spec, renamed

    spec = random_spec(183)
    model, x = build_model(spec)
    golden = export_golden(model, torch.from_numpy(x[:2]))
    params, _ = policy_and_thresholds(spec, golden, golden.forward(x))
    plan = renamed(plan_design(golden, "p183", None), "p183")
    hw = plan.blocks[0]
    window, mvu = hw.stages[0], hw.stages[1]
    assert (window.k, window.stride, mvu.vector_ii, mvu.folding.simd) == (1, 2, 3, window.c)
    rtl = generate(plan, params, tmp_path, golden.exits)
    result = _simulate(rtl, hw, golden.quantize_input(x[:4]))
    assert np.array_equal(result.outputs, _beats(golden.blocks[0](x[:4])))
    assert result.latency[0] == timing.block_timing(hw).latency
