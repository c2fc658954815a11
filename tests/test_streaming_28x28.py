"""The 28x28 workload through the streaming RTL without its training run (which belongs in
benchmarks/early_exit_ratios.py): fmnist_cnn's own network, quantisers calibrated on real
Fashion-MNIST images and weights left at their initialisation, exported to the golden model and
simulated as the early-exit design and the baseline; every result against the golden model and
the Python policy, and the final-exit worst case within the stated bound."""

import numpy as np
import pytest
import torch

from eehw.config import load_config
from eehw.errors import EehwError
from eehw.hw.measure import check_against_golden, expected_outputs
from eehw.hw.plan import plan_design
from eehw.hw.rtl.design import generate
from eehw.hw.rtl.sim import simulate
from eehw.hw.stages import FifoStage, Folding, MvuStage, WindowStage
from eehw.model.data import load_dataset
from eehw.model.export import export_golden
from eehw.model.net import make_model
from eehw.policy.policies import PolicyParams, margin_score

SAMPLES = 24


@pytest.fixture(scope="module")
def fmnist():
    cfg = load_config("fmnist_cnn")
    try:
        data = load_dataset(cfg.data, cfg.seed)
    except EehwError as exc:
        pytest.skip(str(exc))
    torch.manual_seed(0)
    model = make_model(cfg, data.x_train.shape[1:], data.num_classes, input_signed=False)
    model.train()
    with torch.no_grad():
        for start in range(0, 512, 128):  # settle the runtime-statistics quantisers
            model(torch.from_numpy(data.x_train[start : start + 128]))
    model.eval()
    golden = export_golden(model, torch.from_numpy(data.x_train[:2]))
    return cfg, data, golden


def test_a_28x28_early_exit_design_streams_bit_exact(fmnist, tmp_path):
    cfg, data, golden = fmnist
    x = data.x_test[:SAMPLES]
    logits = golden.forward(x)
    params = PolicyParams("margin")
    thresholds = [int(np.median(margin_score(z))) for z in logits[:-1]]  # samples leave at every exit
    # The first conv's whole 3x3 window in one beat, the rest folded: II set by the 30x30 scan.
    foldings = {"blocks.0.1": Folding(9, 8)}
    for kind, exits, t in (("early_exit", None, thresholds), ("baseline", [], [])):
        plan = plan_design(golden, f"fm_{kind}", exits, foldings, cfg.hardware.max_simd, cfg.hardware.max_pe)
        window = plan.blocks[0].stages[0]
        assert isinstance(window, WindowStage) and (window.in_beat, window.in_beats, window.out_beat) == (1, 784, 9)
        assert plan.blocks[0].ii == 900  # the padded 30x30 map, one position a cycle
        rtl = generate(plan, params, tmp_path / kind, golden.exits)
        x_int = golden.quantize_input(x)
        runs = {"stream": (simulate(rtl, x_int, t, quick=True, gap_p=0.2, stall_p=0.3, seed=3), t)}
        never = [None] * len(t)
        runs["worst"] = (simulate(rtl, x_int, never, one_at_a_time=True, quick=True), never)
        for run, (sim, thr) in runs.items():
            exp_exit, exp_class = expected_outputs(golden, rtl, params, x, thr)
            check = check_against_golden(sim, exp_exit, exp_class)
            assert check["mismatches"] == check["lost"] == check["duplicated"] == 0, (kind, run, check)
            assert not sim.error_flag
        if kind == "early_exit":
            assert len(set(runs["stream"][0].exit_index.tolist())) == len(golden.exits)
        worst = runs["worst"][0].latency
        assert worst.max() == rtl.latency_bound, (kind, worst.max(), rtl.latency_bound)


def test_the_28x28_plan_keeps_no_map_in_one_beat(fmnist):
    """Every stream of the 28x28 design is a pixel (its channels) or a window slice per beat, and
    an MVU slower than its window gets the FIFO that keeps it busy across samples."""
    cfg, _, golden = fmnist
    plan = plan_design(golden, "fm", None, {"blocks.0.1": Folding(9, 1)}, cfg.hardware.max_simd, cfg.hardware.max_pe)
    for block in [*plan.blocks, *plan.heads.values()]:
        for stage in block.stages:
            assert stage.in_beat <= 16 * 9 and stage.out_beat <= 32, (stage.name, stage.in_beat, stage.out_beat)
    stages = plan.blocks[0].stages
    assert isinstance(stages[1], FifoStage) and isinstance(stages[2], MvuStage)


def test_blocks_at_one_pace_stream_at_the_slowest_blocks_rate(fmnist, tmp_path):
    """The baseline folded so every block takes 815-900 cycles a sample: back to back, samples
    leave every 900 cycles (the slowest block's II, what the DSE predicts), although each later
    block gets its input as pooled-row bursts. Without the one-row FIFO before a later block's
    window those bursts stalled the blocks before it: 1,119 cycles a sample on this design."""
    cfg, data, golden = fmnist
    foldings = {
        "blocks.0.1": Folding(9, 8),
        "blocks.1.1": Folding(18, 16),
        "blocks.2.1": Folding(16, 8),
        "blocks.3.1": Folding(12, 4),
        "heads.3.2": Folding(4, 1),
    }
    plan = plan_design(golden, "fm_paced", [], foldings, cfg.hardware.max_simd, cfg.hardware.max_pe)
    iis = [b.ii for b in [*plan.blocks, *plan.heads.values()]]
    assert max(iis) == 900 and min(iis[:4]) >= 815, iis
    for block in plan.blocks[1:]:
        w = next(i for i, s in enumerate(block.stages) if isinstance(s, WindowStage))
        fifo, window = block.stages[w - 1], block.stages[w]
        assert isinstance(fifo, FifoStage) and fifo.depth >= window.width, block.name
    rtl = generate(plan, PolicyParams("margin"), tmp_path, golden.exits)
    sim = simulate(rtl, golden.quantize_input(data.x_test[:SAMPLES]), [], quick=True)
    out = np.sort(sim.out_cycle)
    steady = (out[-1] - out[SAMPLES // 3]) / (SAMPLES - 1 - SAMPLES // 3)
    assert steady == pytest.approx(max(iis), rel=0.01), steady
