"""Every shipped config end to end: trained, exported, and the golden integer model equal to
Brevitas on every test sample at every exit."""

import json

import numpy as np
import pytest

from eehw import flow
from eehw.artefacts import Evaluation
from eehw.model.export import brevitas_int_logits

SHIPPED = ["digits_mlp", "digits_cnn", "mnist1d_cnn"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_golden_equals_brevitas_on_full_test_set(name):
    design = flow.run(name, stop_after="golden")
    data, golden = design.data, design.golden
    ours = golden.forward(data.x_test)
    theirs = brevitas_int_logits(design.trained.model, data.x_test, golden)
    assert len(ours) == len(design.cfg.model.exits) >= 3
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == (len(data.y_test), data.num_classes)
        mismatches = int((a != b).any(axis=1).sum())
        assert mismatches == 0, f"exit {k}: {mismatches} samples differ"
    # A trained model, not a broken one: the final exit is far above chance (10 classes).
    assert (np.argmax(ours[-1], axis=1) == data.y_test).mean() > 0.6


@pytest.mark.slow
def test_evaluation_report_keys_and_consistency():
    design = flow.run("digits_cnn", stop_after="evaluate")
    ev = design.evaluation
    assert ev.golden_mismatches == 0
    rates = [e.exit_rate for e in ev.exits]
    assert abs(sum(rates) - 1.0) < 1e-9
    # Target mode: within 0.5 pp of the final exit on validation; allow test-set noise of a few samples.
    assert ev.accuracy >= ev.final_accuracy - 0.02
    assert 0 < ev.mean_cost_ratio < 1.2 and 0 < ev.oracle_cost_ratio <= ev.exits[-1].cost_ratio
    # evaluation.json is this document, and reads back as it was written.
    written = json.loads((design.out_dir / "evaluation.json").read_text())
    assert Evaluation.from_json(written) == ev and written["kind"] == "evaluation"
