"""The generated early-exit top in Verilator under cocotb, against the golden model and the
Python policy: every test sample, backpressure, and the stated worst-case latency."""

import numpy as np
import pytest

from eehw import flow
from eehw.measure import expected_outputs
from eehw.sim import simulate


@pytest.fixture(scope="module")
def design():
    return flow.run("digits_mlp", board="pynq-z2", stop_after="rtl")


def _thresholds(design):
    return flow._early_exit_choice(design)[1]


@pytest.mark.slow
def test_every_test_sample_matches_golden_and_baseline_too(design):
    params = flow._policy(design)
    x = design.data.x_test
    x_int = design.golden.quantize_input(x)
    for kind, thresholds in (("early_exit", _thresholds(design)), ("baseline", [])):
        rtl = design.rtl[kind]
        sim = simulate(rtl, x_int, thresholds)
        exp_exit, exp_class = expected_outputs(design.golden, rtl, params, x, thresholds)
        assert sim.missing == 0 and sim.duplicates == 0 and not sim.error_flag
        np.testing.assert_array_equal(sim.exit_index, exp_exit)
        np.testing.assert_array_equal(sim.prediction, exp_class)
    # The early exits are used: not every sample goes to the final exit.
    assert (sim.exit_index == 0).all()  # baseline: its only exit
    assert len(design.rtl["early_exit"].plan.exits) >= 2


@pytest.mark.slow
def test_backpressure_loses_and_duplicates_nothing_over_10k_samples(design):
    rtl = design.rtl["early_exit"]
    params = flow._policy(design)
    x = design.data.x_test
    repeat = -(-10_000 // len(x))
    # Thresholds halfway so samples leave at several exits and every gate forwards and drops.
    thresholds = [max(1, t // 4) for t in _thresholds(design)]
    sim = simulate(rtl, design.golden.quantize_input(x), thresholds, repeat=repeat, gap_p=0.3, stall_p=0.4, seed=7)
    assert sim.samples >= 10_000
    assert sim.missing == 0 and sim.duplicates == 0 and not sim.error_flag
    exp_exit, exp_class = expected_outputs(design.golden, rtl, params, x, thresholds)
    np.testing.assert_array_equal(sim.exit_index, np.tile(exp_exit, repeat))
    np.testing.assert_array_equal(sim.prediction, np.tile(exp_class, repeat))


@pytest.mark.slow
def test_worst_case_latency_equals_the_stated_bound(design):
    x_int = design.golden.quantize_input(design.data.x_test[:8])
    for kind, rtl in design.rtl.items():
        n = len(rtl.plan.exits) - 1
        sim = simulate(rtl, x_int, [None] * n, one_at_a_time=True)
        assert (sim.exit_index == n).all()  # every early exit disabled: all to the final exit
        assert sim.latency.max() == sim.latency.min() == rtl.latency_bound, kind


def test_generated_tops_are_lint_clean(design):
    import subprocess

    from eehw.verilator import require_verilator, verilator_env

    env = {**__import__("os").environ, **verilator_env()}
    for rtl in design.rtl.values():
        result = subprocess.run([require_verilator(), "--lint-only", "-Wall", "-f", str(rtl.out_dir / f"{rtl.top}.f"),
                                 "--top-module", rtl.top], capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_a_design_over_budget_says_which_resource_and_by_how_much(design, tmp_path):
    from eehw.board import load_board
    from eehw.measure import resources

    board = tmp_path / "tiny.yaml"
    board.write_text("name: tiny\npart: xc7z007sclg225-1\nfamily: xc7\nclock_mhz: 100\n"
                     "budget: {LUT: 1000, FF: 1000000, BRAM18: 100, DSP: 100}\nshell: {type: zynq7}\n"
                     "description: a board too small for the design\n")
    res = resources(design.rtl["baseline"], load_board(str(board)))
    assert res["fits"] is False
    assert res["overruns"] == [f"LUT over by {res['LUT'] - 1000:,} ({res['LUT']:,} / 1,000)"]


@pytest.mark.slow
@pytest.mark.parametrize("config", ["digits_cnn", "mnist1d_cnn"])
def test_cnn_designs_match_golden_on_every_test_sample(config):
    design = flow.run(config, board="pynq-z2", stop_after="rtl")
    params = flow._policy(design)
    x = design.data.x_test
    x_int = design.golden.quantize_input(x)
    for kind, thresholds in (("early_exit", _thresholds(design)), ("baseline", [])):
        rtl = design.rtl[kind]
        sim = simulate(rtl, x_int, thresholds)
        exp_exit, exp_class = expected_outputs(design.golden, rtl, params, x, thresholds)
        assert sim.missing == 0 and sim.duplicates == 0 and not sim.error_flag
        np.testing.assert_array_equal(sim.exit_index, exp_exit)
        np.testing.assert_array_equal(sim.prediction, exp_class)
        worst = simulate(rtl, x_int[:3], [None] * len(thresholds), one_at_a_time=True)
        assert worst.latency.max() == worst.latency.min() == rtl.latency_bound, kind
