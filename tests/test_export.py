"""The quantisation contract: a user's own Brevitas model is taken when it holds, and refused
with one line naming the layer and the fix when it does not."""

from pathlib import Path

import numpy as np
import pytest
import torch

from eehw.config import load_config
from eehw.errors import EehwError
from eehw.model.export import brevitas_int_logits, check_contract, export_golden, fixed_input_quant
from eehw.model.net import load_factory_model

USER_MODELS = Path(__file__).parent / "user_models"


@pytest.fixture
def factory(tmp_path):
    """A config naming a factory of tests/user_models/tiny_ee.py, written with a copy of that
    module under tmp_path (a factory module is found beside its config)."""
    (tmp_path / "tiny_ee.py").write_text((USER_MODELS / "tiny_ee.py").read_text())

    def make(func):
        path = tmp_path / f"cfg_{func}.yaml"
        path.write_text(f"data: {{name: digits}}\nmodel: {{factory: 'tiny_ee:{func}'}}\n")
        return load_config(path)

    return make


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


@pytest.mark.parametrize(
    "func,message",
    [
        ("make_float_scale_model", "blocks.0.0: activation scale"),
        ("make_per_channel_model", "blocks.0.2 has per-channel weight scales"),
        ("make_float_bias_model", "blocks.0.2 has a float bias"),
        (
            "make_float_feature_model",
            "layer heads.0.0 failed in a quantised forward pass: the layer before it must return a QuantTensor",
        ),
        ("make_unsupported_layer_model", "blocks.0.4 (Sigmoid) is not supported"),
    ],
)
def test_contract_violations_are_refused(factory, func, message):
    model = load_factory_model(factory(func))
    fails_forward = func in ("make_unsupported_layer_model", "make_float_feature_model")
    x = torch.rand(4, 1, 8, 8) if fails_forward else _calibrated(model)
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


def _brevitas_logits(model, x):
    with torch.no_grad():
        return [getattr(z, "value", z).clone() for z in model(x)]


@pytest.mark.parametrize("func", ["make_no_head_input_quant_model", "make_bare_linear_head_model"])
def test_missing_quantisers_are_completed_exactly(factory, func):
    """A head that reads a QuantReLU's output gets the input quantiser that is the identity on
    it (Brevitas's logits are the same before and after), a head without an output quantiser
    gets the config's logit_bits, and the golden model equals Brevitas on every sample."""
    model = load_factory_model(factory(func))
    head = model.heads["0"]
    own_output_bits = 8 if func == "make_no_head_input_quant_model" else None
    assert isinstance(head, torch.nn.Sequential)
    assert head[-1].act_quant.bit_width() == (own_output_bits or 16)  # the config's default logit_bits
    x = _calibrated(model)
    data = np.random.default_rng(1).integers(0, 17, size=(300, 1, 8, 8)).astype(np.float32) / 16
    before = _brevitas_logits(model, torch.from_numpy(data))
    golden = export_golden(model, x)
    assert type(model.heads["0"][0]).__name__ == "QuantIdentity"
    for a, b in zip(before, _brevitas_logits(model, torch.from_numpy(data))):
        assert torch.equal(a, b)
    for ours, theirs in zip(golden.forward(data), brevitas_int_logits(model, data, golden)):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [2, 3, 5, 8])
@pytest.mark.parametrize("exp", [-7, -1, 0, 3])
def test_inserted_input_quantiser_is_the_identity(signed, bits, exp):
    """Every value on the 2^exp grid within the bits-wide range comes out unchanged, at that
    scale and width (the proof that inserting it changes nothing)."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    ints = torch.arange(lo, hi + 1, dtype=torch.float32)
    out = fixed_input_quant(exp, bits, signed)(ints * 2.0**exp)
    assert float(out.scale) == 2.0**exp and int(out.bit_width) == bits and bool(out.signed) == signed
    assert torch.equal(out.value, ints * 2.0**exp)


def test_untrained_check_refuses_wrong_logit_shape(factory):
    model = load_factory_model(factory("make_wrong_classes_model"))
    with pytest.raises(EehwError, match=r"heads.0 returns logits shaped \(7,\) per sample; the dataset has 10"):
        check_contract(model, torch.rand(2, 1, 8, 8), 10)


def test_untrained_check_refuses_heads_of_different_logit_widths(factory):
    model = load_factory_model(factory("make_mixed_logit_widths_model"))
    with pytest.raises(EehwError, match="heads.0: 8-bit signed, heads.1: 12-bit signed"):
        check_contract(model, torch.rand(2, 1, 8, 8), 10)
