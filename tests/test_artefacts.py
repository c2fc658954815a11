"""The typed files between commands: written, read back equal, refused with one line when wrong."""

import json

import numpy as np
import pytest

from eehw.artefacts import SCHEMA_VERSION, Evaluation, ExitChoice, ExitStats, Measurement
from eehw.errors import EehwError
from eehw.policy.policies import PolicyParams

CHOICE = ExitChoice(
    config="c",
    board="pynq-z2",
    training_hash="abc",
    exits=(0, 2, 3),
    heads=("linear", "pool_linear", "linear"),
    policy=PolicyParams("max_softmax_pow2", shifts=(1, 2, 3), frac_bits=6),
    thresholds=(17, None),
    folding={"blocks.0.1": (4, 2)},
    baseline_folding={"blocks.0.1": (8, 2)},
)


def test_exit_choice_round_trips(tmp_path):
    CHOICE.save(tmp_path / "chosen.json")
    raw = json.loads((tmp_path / "chosen.json").read_text())
    assert raw["schema"] == SCHEMA_VERSION and raw["thresholds"] == [17, None]
    assert raw["folding"] == {"blocks.0.1": [4, 2]} and raw["policy"]["shifts"] == [1, 2, 3]
    assert ExitChoice.load(tmp_path / "chosen.json") == CHOICE


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.update(schema=0), "has schema 0"),
        (lambda r: r.pop("kind"), "not an exit choice"),
        (lambda r: r.pop("folding"), "lacks or mangles 'folding'"),
        (lambda r: r.update(thresholds=[1]), "one threshold per early exit"),
        (lambda r: r["policy"].update(name="nope"), "nope"),
    ],
)
def test_a_wrong_exit_choice_is_one_line(tmp_path, edit, message):
    raw = CHOICE.to_json()
    edit(raw)
    (tmp_path / "chosen.json").write_text(json.dumps(raw))
    with pytest.raises(EehwError, match=message):
        ExitChoice.load(tmp_path / "chosen.json")
    (tmp_path / "chosen.json").write_text("{not json")
    with pytest.raises(EehwError, match="cannot be read"):
        ExitChoice.load(tmp_path / "chosen.json")


EVALUATION = Evaluation(
    config="c",
    dataset="digits",
    samples={"train": 10, "val": 5, "test": 4},
    policy=PolicyParams("margin", frac_bits=6),
    mode="target",
    max_drop_pp=0.5,
    accuracy=0.75,
    final_accuracy=0.75,
    mean_cost_ratio=0.6,
    oracle_cost_ratio=0.4,
    oracle_accuracy=1.0,
    overthinking=0.0,
    golden_mismatches=0,
    golden_first_mismatch=None,
    golden_checked={"samples": 4, "exits": 2},
    exits=(
        ExitStats(0, "heads.0", 0.5, 0.5, 0.4, 1.0, 7, 0.3, 100, 20, -3),
        ExitStats(1, "heads.1", 0.75, 0.5, 0.6, 0.5, None, 1.0, 300, 20, -2),
    ),
    train_seconds=1.5,
    checkpoint_cached=True,
)

MEASUREMENT = Measurement(
    top="t",
    latency_bound=90,
    bit_exact={"samples": 4, "mismatches": 0, "lost": 0, "duplicated": 0, "first_mismatch": None},
    latency_cycles={"mean": 50.0, "per_exit": [{"exit": 0}, {"exit": 1}, {"exit": 2}]},
    latency_cycles_raw=np.array([40, 40, 60, 60]),
    latency_under_load_cycles={"mean": 70.0, "max": 80},
    worst_case_latency_cycles=88,
    worst_case_samples=4,
    throughput_samples_per_cycle=0.02,
    simulated_cycles=900,
    simulation_seconds=0.5,
    predictions=np.array([1, 2, 3, 4]),
    exit_index=np.array([0, 0, 1, 0]),
    error_flag=False,
)


def test_evaluation_round_trips_in_the_layout_of_evaluation_json(tmp_path):
    EVALUATION.save(tmp_path / "evaluation.json")
    raw = json.loads((tmp_path / "evaluation.json").read_text())
    assert raw["kind"] == "evaluation" and raw["policy"]["name"] == "margin" and raw["policy"]["mode"] == "target"
    assert raw["exits"][0]["threshold"] == 7 and raw["exits"][1]["val_exit_rate"] == 0.6
    assert Evaluation.from_json(raw) == EVALUATION
    raw["schema"] = 0
    with pytest.raises(EehwError, match="has schema 0.*rerun `eehw evaluate`"):
        Evaluation.from_json(raw)


def test_measurement_round_trips_with_its_arrays():
    m = MEASUREMENT.with_resources({"LUT": 10, "fits": True}, 2.0)
    raw = json.loads(json.dumps(m.to_json()))
    # exit rates over the design's exits, the unused third one included
    assert raw["exit_rates"] == [0.75, 0.25, 0.0] and raw["resources"]["LUT"] == 10
    back = Measurement.from_json(raw)
    for name in Measurement.ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(m, name))
    assert back.resources == m.resources and back.synthesis_seconds == 2.0 and back.top == "t"
    with pytest.raises(EehwError, match="not measurement"):
        Measurement.from_json({**raw, "kind": "evaluation"})
