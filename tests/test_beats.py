"""The beat-exact timing model (eehw.hw.beats): against the figures the module headers state, and
against the simulated worst case where a sample finds the previous one's trailing work still in
the pipeline (the random-model property test compares it with the simulation on 200 designs)."""

import numpy as np

from eehw.hw.beats import ExitGate, Mvu, Pool, Window
from eehw.hw.stages import Folding, MvuStage, PoolStage, WindowStage


def _mvu(in_n, out_n, simd, pe, positions=1):
    return MvuStage(
        "m", np.zeros((out_n, in_n), np.int64), np.zeros(out_n, np.int64), Folding(simd, pe),
        4, False, 4, 8, 0, 4, False, 0, 15, positions,
    )  # fmt: skip


def test_window_meets_its_header_example():
    """sliding_window.v: 28x28, K = 3, PAD = 1, NB = 1: first 63, last 32, 900 cycles a sample."""
    w = WindowStage("w", 2, 1, 28, 28, 3, 1, 1, 4, 9)
    model = Window(w)
    taken, outs = model.feed(list(range(784)))
    assert len(outs) == 784
    assert outs[0] - taken[0] == 63
    assert outs[-1] - taken[-1] == 32
    _, again = model.feed(list(range(784, 2 * 784)))  # the next sample, offered back to back
    assert again[0] - outs[0] == 900


def test_mvu_meets_its_header_latencies():
    """mvu.v: L_last = 4 + SF*NF (NF > 1) or 4, L_first = SF - 1 + L_last, vectors II apart."""
    for simd, pe in ((4, 2), (4, 8), (16, 8)):
        m = _mvu(16, 8, simd, pe, positions=3)
        sf, nf = 16 // simd, 8 // pe
        last = 4 + (sf * nf if nf > 1 else 0)
        taken, outs = Mvu(m).feed(list(range(3 * sf)))
        assert outs[0] - taken[0] == sf - 1 + last, (simd, pe)
        assert outs[0] - taken[sf - 1] == last
        assert np.diff(outs).tolist() == [sf * nf] * 2


def test_pool_meets_its_header_latencies():
    """maxpool.v: first ((KH-1)*IN_W + K-1)*FOLD + 1; last beat i_L - N + 2 after the last input."""
    p = PoolStage("p", 2, 8, 6, 7, 2, 4, False, 2)  # 6x7 drops its last column
    taken, outs = Pool(p).feed(list(range(6 * 7 * 2)))
    assert outs[0] - taken[0] == (1 * 7 + 1) * 2 + 1
    i_last = ((3 * 2 - 1) * 7 + 3 * 2 - 1) * 2 + 1
    assert outs[-1] - taken[-1] == i_last - 6 * 7 * 2 + 2


def test_exit_gate_forwards_as_its_header_states():
    """exit_gate.v: with the sample buffered, beats on edges n+1 .. n+L after the decision's edge
    n; a beat still arriving when the decision is there goes out the cycle after it is taken
    (fmnist_cnn with a pool_linear head at exit 2: that head decides before block 2's trailing
    pixels are in, measured 30 cycles over a model that forwarded from the decision alone)."""
    assert ExitGate().forward([0, 1, 2], decision=5) == [6, 7, 8]
    assert ExitGate().forward([3, 9, 30], decision=5) == [6, 10, 31]
    gate = ExitGate()
    gate.forward([0, 1, 2], decision=40)
    assert gate.forward([1, 2], decision=41) == [44, 45]  # after the previous sample's last beat (43)


def test_the_worst_case_counts_the_previous_samples_trailing_work(tmp_path):
    """Random model seed 134's baseline: block 0's MVU needs 180 cycles a sample but its pool keeps
    only the first rows, so the result is out after 124 cycles while the MVU still works through
    the rest; the next sample, sent at once, waits for it. The stated worst case is the later
    samples', to the cycle, and the DSE's composed bound stays above it."""
    import torch

    from eehw.hw.plan import plan_design
    from eehw.hw.rtl.design import generate
    from eehw.hw.rtl.sim import simulate
    from eehw.hw.timing import exit_paths
    from eehw.model.export import export_golden
    from eehw.random_models import build_model, policy_and_thresholds, random_spec, renamed

    spec = random_spec(134)
    model, x = build_model(spec)
    golden = export_golden(model, torch.from_numpy(x[:2]))
    params, _ = policy_and_thresholds(spec, golden, golden.forward(x))
    plan = renamed(plan_design(golden, "p134_baseline", []), "p134_baseline")
    rtl = generate(plan, params, tmp_path, golden.exits)
    run = simulate(rtl, golden.quantize_input(x[:6]), [], one_at_a_time=True, quick=True)
    assert run.latency[0] < run.latency.max() == rtl.latency_bound < exit_paths(plan, rtl.decision)[-1].latency
