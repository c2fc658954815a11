"""Caches keyed by what made them: editing a user's model retrains, a corrupt or stale
checkpoint is rebuilt with one line, and an interrupted save leaves nothing to reuse."""

import sys

import numpy as np
import pytest
import torch

from eehw import cache
from eehw.cache import atomic_save, code_hash, digest_path, user_modules
from eehw.config import load_config
from eehw.model.data import load_dataset
from eehw.model.train import checkpoint_path, train

MODEL = '''
"""A user's multi-exit model whose hidden width lives in another of the user's modules."""
import torch
from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int16Bias
from brevitas.quant import Uint8ActPerTensorFixedPoint
from torch import nn

from cachetest_widths import HIDDEN


class Net(nn.Module):
    def __init__(self, blocks, heads):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.heads = nn.ModuleDict(heads)

    def forward(self, x):
        outs = []
        for k, block in enumerate(self.blocks):
            x = block(x)
            if str(k) in self.heads:
                outs.append(self.heads[str(k)](x))
        return outs


def _in(quant=Uint8ActPerTensorFixedPoint):
    return QuantIdentity(act_quant=quant, bit_width=8, return_quant_tensor=True)


def _linear(n_in, n_out):
    return QuantLinear(n_in, n_out, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4,
                       bias_quant=Int16Bias, return_quant_tensor=True)


def _relu():
    return QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=True)


def make_model():
    torch.manual_seed(0)
    blocks = [nn.Sequential(_in(Int8ActPerTensorFixedPoint), nn.Flatten(), _linear(64, HIDDEN), _relu()),
              nn.Sequential(_in(), _linear(HIDDEN, 16), _relu())]
    heads = {"0": nn.Sequential(_in(), _linear(HIDDEN, 10), _in(Int8ActPerTensorFixedPoint)),
             "1": nn.Sequential(_in(), _linear(16, 10), _in(Int8ActPerTensorFixedPoint))}
    return Net(blocks, heads)
'''

CONFIG = """
name: cachetest
seed: 0
data: {name: digits}
model: {factory: "cachetest_model:make_model"}
training: {regime: e2e, epochs: 1, batch_size: 128, lr: 0.02}
"""


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test its own cache and build folders, so every first train() really trains."""
    monkeypatch.setenv("EEHW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EEHW_BUILD_DIR", str(tmp_path / "build"))


@pytest.fixture
def user_model(tmp_path):
    """A factory config next to the user's model module and the module holding its width."""
    (tmp_path / "cachetest_model.py").write_text(MODEL)
    (tmp_path / "cachetest_widths.py").write_text("HIDDEN = 16\n")
    path = tmp_path / "cachetest.yaml"
    path.write_text(CONFIG)
    yield path
    for name in ("cachetest_model", "cachetest_widths"):
        sys.modules.pop(name, None)


@pytest.fixture
def mlp(tiny_config):
    """A config, its data and a trained checkpoint (1 epoch)."""
    cfg = load_config(tiny_config("e2e", epochs=1, seed=1))
    data = load_dataset(cfg.data, cfg.seed, cfg.base_dir)
    first = train(cfg, data)
    assert not first.cached and first.checkpoint.exists() and digest_path(first.checkpoint).exists()
    return cfg, data, first


@pytest.mark.slow
def test_editing_a_users_imported_module_retrains(user_model):
    cfg = load_config(user_model)
    data = load_dataset(cfg.data, cfg.seed, cfg.base_dir)
    assert set(user_modules("cachetest_model", [cfg.base_dir])) == {"cachetest_model", "cachetest_widths"}
    first = train(cfg, data)
    assert not first.cached and first.model.blocks[0][2].out_features == 16
    assert train(cfg, data).cached
    (user_model.parent / "cachetest_widths.py").write_text("HIDDEN = 24\n")  # same size: bytes, not mtimes
    cfg = load_config(user_model)
    assert checkpoint_path(cfg) != first.checkpoint
    second = train(cfg, data)
    assert not second.cached and second.model.blocks[0][2].out_features == 24


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "garbage", "no digest"])
def test_a_corrupt_checkpoint_is_retrained(mlp, damage, capsys):
    cfg, data, first = mlp
    path = first.checkpoint
    good = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(good)))
    else:  # interrupted between the payload and its digest
        digest_path(path).unlink()
    capsys.readouterr()
    again = train(cfg, data)
    notices = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cache:")]
    assert not again.cached
    assert len(notices) == 1 and notices[0].startswith(f"cache: checkpoint {path} was corrupt (")
    assert notices[0].endswith(", retraining")
    reused = train(cfg, data)  # a valid entry now, with the weights the same seed trains
    assert reused.cached
    for a, b in zip(first.model.state_dict().values(), reused.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_the_model_is_stale(mlp, capsys):
    cfg, data, first = mlp
    path = first.checkpoint
    atomic_save({"state_dict": {"blocks.0.1.weight": np.zeros((3, 3))}, "seconds": 1.0}, path)  # valid digest
    capsys.readouterr()
    again = train(cfg, data)
    assert not again.cached
    assert f"cache: checkpoint {path} is stale (does not fit the model" in capsys.readouterr().err
    assert train(cfg, data).cached


@pytest.mark.slow
@pytest.mark.parametrize("where", ["payload", "digest"])
def test_an_interrupted_save_leaves_nothing_reused(tiny_config, monkeypatch, capsys, where):
    cfg = load_config(tiny_config("e2e", epochs=1, seed=2))
    data = load_dataset(cfg.data, cfg.seed, cfg.base_dir)
    path = checkpoint_path(cfg)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        if where == "payload":  # Ctrl-C while the checkpoint itself is being written
            patch.setattr(cache.os, "fsync", interrupt)
        else:  # Ctrl-C after the checkpoint, before its digest
            patch.setattr(cache, "atomic_write_text", interrupt)
        train(cfg, data)
    assert not digest_path(path).exists()
    assert path.exists() == (where == "digest")
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no temporary file left
    capsys.readouterr()
    assert not train(cfg, data).cached  # nothing taken as good
    assert ("was corrupt (no digest" in capsys.readouterr().err) == (where == "digest")


def test_code_hash_follows_the_bytes(tmp_path):
    src = tmp_path / "gen.py"
    src.write_text("WIDTH = 16\n")
    before = code_hash(src)
    assert code_hash(src) == before and code_hash(tmp_path) == code_hash(tmp_path)
    folder_before = code_hash(tmp_path)
    src.write_text("WIDTH = 24\n")  # same size, maybe the same mtime: the bytes decide
    assert code_hash(src) != before and code_hash(tmp_path) != folder_before
    assert code_hash("eehw.cache") == code_hash(cache)  # a module by name (not imported) or object
    with pytest.raises(Exception, match="cannot be part of a cache key"):
        code_hash(tmp_path / "missing.py")


def test_user_modules_leave_out_libraries(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "layers.py").write_text("import numpy\nfrom . import consts\n")
    (pkg / "consts.py").write_text("W = 3\n")
    (tmp_path / "entry.py").write_text(
        "import os, json, torch\nimport eehw.model.net\ndef make():\n    from mypkg.layers import consts\n"
    )
    found = user_modules("entry", [tmp_path])
    assert set(found) == {"entry", "mypkg", "mypkg.layers", "mypkg.consts"}


def test_training_hash_tracks_dataset_file_and_training_code(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.random((60, 4)), y=np.arange(60) % 2)
    path = tmp_path / "c.yaml"
    path.write_text("data: {name: npz, path: d.npz}\nmodel: {backbone: mlp, widths: [8]}\n")
    first = load_config(path).training_hash()
    np.savez(tmp_path / "d.npz", X=rng.random((60, 4)), y=np.arange(60) % 2)
    second = load_config(path).training_hash()
    assert second != first
    monkeypatch.setattr(cache, "code_hash", lambda *sources: "edited")
    assert load_config(path).training_hash() != second
