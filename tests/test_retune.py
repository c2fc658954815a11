"""`eehw retune`: new register values for the built design, checked on that design's RTL.

The reference is the golden integer model and the Python policy (eehw.policy.policies.decide) over
the exits the built RTL keeps; the RTL is the one `eehw synth` generated, simulated with the
retuned register values without being regenerated.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from eehw import flow
from eehw.deploy.pynq_driver import RegisterMap
from eehw.deploy.retune import register_map_path, retune, rtl_register_map_path
from eehw.errors import EehwError
from eehw.hw.rtl.sim import simulate
from eehw.policy.policies import decide

CONFIG, BOARD = "digits_mlp", "pynq-z2"


@pytest.fixture(scope="module")
def built():
    return flow.run(CONFIG, BOARD, stop_after="hls")


def _files(folder):
    return {p: os.stat(p).st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("target", [{"budget": 0.3}, {"exit": 1}, {"max_drop_pp": 0.0}])
def test_retuned_registers_drive_the_built_rtl(built, target):
    d = built
    rtl = d.rtl["early_exit"]
    before = _files(rtl.out_dir)
    result = retune(CONFIG, BOARD, **target)
    assert _files(rtl.out_dir) == before  # nothing regenerated
    thresholds = result["thresholds"]
    regmap = RegisterMap.load(register_map_path(d.out_dir))
    assert list(regmap.thresholds) == thresholds
    assert list(RegisterMap.load(rtl_register_map_path(d.out_dir)).thresholds) == thresholds  # the RTL-IP variant
    for t, (address, reg) in zip(thresholds, zip(regmap.exit_registers, result["registers"])):
        assert int(reg["address"], 16) == address
        assert int(reg["value"], 16) == (0 if t is None else t | 1 << 31)

    x = d.data.x_test
    sim = simulate(rtl, d.golden.quantize_input(x), thresholds)
    keep = [d.golden.exits.index(p) for p in rtl.plan.exits]
    logits = d.golden.forward(x)
    want_exit, want_class = decide(
        flow.design_policy(d).restricted(keep),
        [logits[k] for k in keep],
        [d.golden.logit_exps[k] for k in keep],
        thresholds,
    )
    np.testing.assert_array_equal(sim.exit_index[: len(x)], want_exit)
    np.testing.assert_array_equal(sim.prediction[: len(x)], want_class)
    measured = np.bincount(sim.exit_index[: len(x)], minlength=len(keep)) / len(x)
    np.testing.assert_allclose(measured, result["predicted_test"]["exit_rates"], atol=1e-12)
    if "exit" in target:
        assert measured[target["exit"]] == 1.0
    if "budget" in target:
        assert result["predicted_test"]["mean_cost_ratio"] <= target["budget"] + 0.05  # chosen on validation
    summary = json.loads((d.out_dir / "retune.json").read_text())
    assert summary["thresholds"] == thresholds and "set_thresholds" in summary["driver_call"]


@pytest.mark.slow
def test_retune_refuses_a_bad_target(built):
    with pytest.raises(EehwError, match="exactly one target"):
        retune(CONFIG, BOARD, budget=0.5, exit=1)
    with pytest.raises(EehwError, match="--exit 9: the built design has exits 0.."):
        retune(CONFIG, BOARD, exit=9)


@pytest.mark.slow
def test_retune_without_a_built_design_says_what_to_run(tiny_config):
    with pytest.raises(EehwError, match=r"no built design .* run `eehw synth tiny_mlp --board pynq-z2` first"):
        retune(str(tiny_config(epochs=1)), BOARD, budget=0.5)
