"""The typed files between commands: written, read back equal, refused with one line when wrong."""

import json

import pytest

from eehw.artefacts import SCHEMA_VERSION, ExitChoice
from eehw.errors import EehwError
from eehw.policies import PolicyParams

CHOICE = ExitChoice(config="c", board="pynq-z2", training_hash="abc", exits=(0, 2, 3),
                    heads=("linear", "pool_linear", "linear"),
                    policy=PolicyParams("max_softmax_pow2", shifts=(1, 2, 3), frac_bits=6),
                    thresholds=(17, None), folding={"blocks.0.1": (4, 2)}, baseline_folding={"blocks.0.1": (8, 2)})


def test_exit_choice_round_trips(tmp_path):
    CHOICE.save(tmp_path / "chosen.json")
    raw = json.loads((tmp_path / "chosen.json").read_text())
    assert raw["schema"] == SCHEMA_VERSION and raw["thresholds"] == [17, None]
    assert raw["folding"] == {"blocks.0.1": [4, 2]} and raw["policy"]["shifts"] == [1, 2, 3]
    assert ExitChoice.load(tmp_path / "chosen.json") == CHOICE


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(schema=0), "has schema 0"),
    (lambda r: r.pop("kind"), "not an exit choice"),
    (lambda r: r.pop("folding"), "lacks or mangles 'folding'"),
    (lambda r: r.update(thresholds=[1]), "one threshold per early exit"),
    (lambda r: r["policy"].update(name="nope"), "nope"),
])
def test_a_wrong_exit_choice_is_one_line(tmp_path, edit, message):
    raw = CHOICE.to_json()
    edit(raw)
    (tmp_path / "chosen.json").write_text(json.dumps(raw))
    with pytest.raises(EehwError, match=message):
        ExitChoice.load(tmp_path / "chosen.json")
    (tmp_path / "chosen.json").write_text("{not json")
    with pytest.raises(EehwError, match="cannot be read"):
        ExitChoice.load(tmp_path / "chosen.json")
