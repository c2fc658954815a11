import warnings

import pytest


@pytest.fixture(autouse=True, scope="session")
def _quiet_brevitas():
    warnings.filterwarnings("ignore", module="brevitas")


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(config, items):
    """The 3-model property test is the fast suite's share of the 200-model one: a run that has
    both skips it (the 200 include its explicit seeds), saving half a minute of CI."""
    names = {item.name for item in items}
    if "test_many_random_models_are_bit_exact" in names:
        for item in items:
            if item.name == "test_random_model_is_bit_exact_at_every_level":
                item.add_marker(pytest.mark.skip(reason="covered by test_many_random_models_are_bit_exact in this run"))


TINY_MLP = """
name: tiny_mlp
seed: {seed}
data: {{name: digits}}
model:
  backbone: mlp
  widths: [16, 16, 16]
  exits: [{{after: all, head: linear}}]
training:
  regime: {regime}
  epochs: {epochs}
  batch_size: 128
  lr: 0.02
{extra}
"""


@pytest.fixture
def tiny_config(tmp_path):
    """Write a small, fast digits MLP config and return its path."""

    def make(regime="e2e", epochs=2, seed=0, extra=""):
        path = tmp_path / f"tiny_{regime}_{seed}_{epochs}.yaml"
        path.write_text(TINY_MLP.format(regime=regime, epochs=epochs, seed=seed, extra=extra))
        return path

    return make


TINY_DSE = """
name: tiny_dse
seed: 0
data: {name: digits}
model:
  backbone: mlp
  widths: [16, 16, 16]
  exits: [{after: all, head: linear}]
training: {regime: e2e, epochs: 3, batch_size: 128, lr: 0.02}
hardware: {max_simd: 2, max_pe: 1}
"""


@pytest.fixture(scope="session")
def tiny_dse_config(tmp_path_factory):
    """A tiny MLP with a head after every block and few folding options: the DSE tests share its
    checkpoint and characterisation cache."""
    path = tmp_path_factory.mktemp("dse") / "tiny_dse.yaml"
    path.write_text(TINY_DSE)
    return path


CNN_DSE = """
name: cnn_dse
seed: 0
data: {name: digits}
model:
  backbone: cnn2d
  widths: [8, 16]
  kernel: 3
  pool: [2, 1]
  weight_bits: 4
  act_bits: 4
  input_bits: 8
  logit_bits: 16
  exits: [{after: 0, head: linear}]
training: {regime: e2e, epochs: 6, batch_size: 64, lr: 0.02}
hardware: {max_simd: 8, max_pe: 4}
"""


@pytest.fixture(scope="session")
def cnn_dse_config(tmp_path_factory):
    """A small 2-D CNN with one early exit, for the DSE's predicted-vs-measured checks on a CNN."""
    path = tmp_path_factory.mktemp("cnn_dse") / "cnn_dse.yaml"
    path.write_text(CNN_DSE)
    return path


class _FakeSynthPool:
    """An executor that runs no Yosys: every 'synthesis' returns figures derived from the
    module text's length, so characterisation tests see distinct, repeatable numbers."""

    def submit(self, fn, top, files, family):
        from concurrent.futures import Future

        f = Future()
        size = sum(len(t) for t in files.values())
        f.set_result({"LUT": size % 997, "FF": size % 499, "DSP": 0, "BRAM18": 0})
        return f


@pytest.fixture
def fake_synth_pool(tmp_path, monkeypatch):
    """A fake synthesis executor, with its own characterisation cache so fake figures never
    reach the real one (checkpoints and logits stay shared)."""
    monkeypatch.setattr("eehw.dse.characterise._cache_path", lambda key: tmp_path / "fake-characterise" / f"{key}.json")
    return _FakeSynthPool()
