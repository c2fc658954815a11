"""The quantisation contract: a user's own Brevitas model is taken when it holds, and refused
with one line naming the layer and the fix when it does not."""

from pathlib import Path

import numpy as np
import pytest
import torch

from eehw.config import load_config
from eehw.errors import EehwError
from eehw.export import brevitas_int_logits, export_golden
from eehw.model import load_factory_model

USER_MODELS = Path(__file__).parent / "user_models"


def _factory_config(tmp_path, func):
    path = USER_MODELS / f"cfg_{func}.yaml"
    path.write_text(f"data: {{name: digits}}\nmodel: {{factory: 'tiny_ee:{func}'}}\n")
    return load_config(path)


@pytest.fixture
def factory(tmp_path):
    made = []

    def make(func):
        cfg = _factory_config(tmp_path, func)
        made.append(cfg.source)
        return cfg

    yield make
    for p in made:
        p.unlink()


def _calibrated(model):
    """A few training-mode passes so the runtime-statistics quantisers settle, as training would."""
    torch.manual_seed(1)
    x = torch.rand(64, 1, 8, 8)
    model.train()
    with torch.no_grad():
        for _ in range(40):
            model(x)
    model.eval()
    return x


def test_user_factory_model_is_bit_exact(factory):
    model = load_factory_model(factory("make_model"))
    x = _calibrated(model)
    golden = export_golden(model, x)
    assert golden.exits == [0, 1]
    data = np.random.default_rng(0).integers(0, 17, size=(500, 1, 8, 8)).astype(np.float32) / 16
    for ours, theirs in zip(golden.forward(data), brevitas_int_logits(model, data, golden)):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("func,message", [
    ("make_float_scale_model", "blocks.0.0: activation scale"),
    ("make_per_channel_model", "blocks.0.2 has per-channel weight scales"),
    ("make_float_bias_model", "blocks.0.2 has a float bias"),
    ("make_no_head_input_quant_model", "heads.0 starts with QuantLinear"),
    ("make_unsupported_layer_model", "blocks.0.4 (Sigmoid) is not supported"),
])
def test_contract_violations_are_refused(factory, func, message):
    model = load_factory_model(factory(func))
    x = _calibrated(model) if func != "make_unsupported_layer_model" else torch.rand(4, 1, 8, 8)
    with pytest.raises(EehwError) as err:
        export_golden(model, x)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    if func == "make_float_scale_model":
        assert "not a power of two" in str(err.value)


def test_factory_errors(factory):
    with pytest.raises(EehwError, match="returned str, not a torch.nn.Module"):
        load_factory_model(factory("make_not_a_module"))
    with pytest.raises(EehwError, match="has no function 'nope'"):
        load_factory_model(factory("nope"))
