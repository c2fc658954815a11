"""Configs: the shipped ones parse as intended, bad ones fail with one line naming file and key."""

import pytest

from eehw.config import Backbone, HeadType, Regime, load_config
from eehw.errors import EehwError


def test_shipped_configs_parse():
    mlp = load_config("digits_mlp")
    assert mlp.model.backbone == Backbone.MLP
    assert [e.after for e in mlp.model.exits] == [0, 1, 2, 3]  # dense placement, >= 3 candidate exits
    cnn = load_config("digits_cnn")
    assert cnn.model.backbone == Backbone.CNN2D and cnn.training.regime == Regime.MIXED
    m1d = load_config("mnist1d_cnn")
    assert [e.head for e in m1d.model.exits] == [
        HeadType.CONV_POOL_LINEAR,
        HeadType.POOL_LINEAR,
        HeadType.LINEAR,
        HeadType.LINEAR,
    ]
    assert m1d.dse.heads == (HeadType.LINEAR, HeadType.POOL_LINEAR, HeadType.CONV_POOL_LINEAR)
    assert mlp.dse.heads == () and mlp.dse.scheduler is None and mlp.dse.worst_latency_factor is None


def test_final_head_is_added_and_hash_tracks_training(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {name: digits}\nmodel: {backbone: mlp, widths: [8, 8], exits: [{after: 0}]}\n")
    cfg = load_config(path)
    assert [(e.after, e.head) for e in cfg.model.exits] == [(0, HeadType.LINEAR), (1, HeadType.LINEAR)]
    path.write_text(path.read_text() + "training: {epochs: 3}\n")
    trained_3 = load_config(path).training_hash()
    assert trained_3 != cfg.training_hash()
    # the policy, the hardware and the DSE settings do not change the weights, nor do the file's
    # name, key order or comments: the same checkpoint serves them all
    other = tmp_path / "other.yaml"
    other.write_text(
        "# reordered, commented, with settings that do not train\n"
        "training: {epochs: 3}\nmodel: {exits: [{after: 0}], widths: [8, 8], backbone: mlp}\n"
        "data: {name: digits}\npolicy: {name: entropy}\nhardware: {max_simd: 4}\n"
    )
    assert load_config(other).training_hash() == trained_3
    for change in ("seed: 1\n", "training: {epochs: 3, lr: 0.0123}\n", "data: {name: digits, val: 0.2}\n"):
        changed = tmp_path / "changed.yaml"
        base = other.read_text().replace("training: {epochs: 3}\n", "").replace("data: {name: digits}\n", "")
        defaults = {"training": "training: {epochs: 3}\n", "data": "data: {name: digits}\n"}
        key = change.split(":")[0]
        changed.write_text(base + change + "".join(v for k, v in defaults.items() if k != key))
        assert load_config(changed).training_hash() != trained_3, change


BAD = [
    ("model: [unclosed\n", "invalid YAML at line"),
    ("- just a list\n", "must hold a mapping"),
    ("model: {backbone: mlp, widths: [8]}\n", "missing key 'data'"),
    ("data: {name: cifar}\nmodel: {backbone: mlp, widths: [8]}\n", "unknown dataset 'cifar'"),
    (
        "data: {name: digits}\nmodel: {backbone: transformer, widths: [8]}\n",
        "key 'model.backbone' unknown value 'transformer'",
    ),
    (
        "data: {name: digits}\nmodel: {backbone: cnn2d, widths: [8], exits: [{after: 0, head: attention}]}\n",
        "unknown value 'attention'",
    ),
    (
        "data: {name: digits}\nmodel: {backbone: mlp, widths: [8], exits: [{after: 0, head: pool_linear}]}\n",
        "needs a convolutional backbone",
    ),
    ("data: {name: digits}\nmodel: {backbone: mlp, widths: [8], exits: [{after: 5}]}\n", "must be <= 0"),
    ("data: {name: digits}\nmodel: {backbone: mlp, widths: [8], widht: 3}\n", "unknown key 'model.widht'"),
    ("data: {name: digits}\nmodel: {backbone: mlp, widths: [8]}\ntraining: {regime: lazy}\n", "training.regime"),
    ("data: {name: digits}\nmodel: {backbone: mlp, widths: [8]}\ntraining: {epochs: 'ten'}\n", "must be an integer"),
    ("data: {name: digits}\nmodel: {backbone: mlp, widths: [8]}\npolicy: {name: vibes}\n", "unknown policy 'vibes'"),
    ("data: {name: digits}\nmodel: {backbone: mlp, widths: [8]}\npolicy: {mode: budgeted}\n", "needs max_cost"),
    ("data: {name: digits}\nmodel: {backbone: mlp, widths: [8], weight_bits: 1}\n", "must be >= 2"),
    (
        "data: {name: digits}\nmodel: {backbone: mlp, widths: [8]}\ndse: {heads: [pool_linear]}\n",
        "key 'dse.heads' an mlp backbone takes only 'linear' heads",
    ),
    (
        "data: {name: digits}\nmodel: {backbone: cnn2d, widths: [8]}\ndse: {heads: [mlp]}\n",
        "key 'dse.heads' unknown value 'mlp'",
    ),
    (
        "data: {name: digits}\nmodel: {backbone: mlp, widths: [8]}\ndse: {scheduler: localhost}\n",
        "key 'dse.scheduler' must be a Dask scheduler address",
    ),
    ("data: {name: digits}\nmodel: {backbone: mlp, widths: [8]}\ndse: {head_epochs: 0}\n", "dse.head_epochs"),
    (
        "data: {name: digits}\nmodel: {backbone: mlp, widths: [8]}\ndse: {worst_latency_factor: 0.5}\n",
        "key 'dse.worst_latency_factor' must be a factor >= 1",
    ),
    (
        "data: {name: digits}\nmodel: {backbone: mlp, widths: [8]}\ndse: {worst_latency_factor: .nan}\n",
        "key 'dse.worst_latency_factor' must be a factor >= 1",
    ),
    (
        "data: {name: digits}\nmodel: {backbone: mlp, widths: [8]}\ndse: {worst_latency_factor: 4x}\n",
        "must be a number",
    ),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_config_one_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(EehwError) as err:
        load_config(path)
    assert message in str(err.value)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_unknown_config_name_lists_shipped():
    with pytest.raises(EehwError, match="digits_mlp"):
        load_config("no_such_config")
