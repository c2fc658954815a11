"""A user's own Brevitas multi-exit module, brought in through ``model: {factory: ...}``.

Besides the well-formed model, it builds the contract violations the flow must refuse.
"""

import torch
from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import (
    Int8ActPerTensorFixedPoint,
    Int8ActPerTensorFloat,
    Int8WeightPerTensorFixedPoint,
    Int16Bias,
    Uint8ActPerTensorFixedPoint,
)
from torch import nn


class TinyEarlyExit(nn.Module):
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


def _quant_in(act_quant=Int8ActPerTensorFixedPoint):
    return QuantIdentity(act_quant=act_quant, bit_width=8, return_quant_tensor=True)


def _linear(n_in, n_out, per_channel=False, bias_quant=Int16Bias):
    # Per-channel power-of-two scales: the same fixed-point quantiser with one scale per output.
    return QuantLinear(
        n_in,
        n_out,
        bias=True,
        weight_quant=Int8WeightPerTensorFixedPoint,
        weight_bit_width=4,
        weight_scaling_per_output_channel=per_channel,
        bias_quant=bias_quant,
        return_quant_tensor=True,
    )


def _relu():
    return QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=True)


def _build(
    act_quant=Int8ActPerTensorFixedPoint,
    per_channel=False,
    bias_quant=Int16Bias,
    head_input=True,
    extra=None,
    head_output=True,
    classes=10,
):
    torch.manual_seed(0)
    block0 = [_quant_in(act_quant), nn.Flatten(), _linear(64, 32, per_channel, bias_quant), _relu()]
    if extra is not None:
        block0.append(extra)
    block1 = [_quant_in(Uint8ActPerTensorFixedPoint), _linear(32, 16), _relu()]
    head0 = (
        ([_quant_in(Uint8ActPerTensorFixedPoint)] if head_input else [])
        + [_linear(32, classes)]
        + ([_quant_in()] if head_output else [])
    )
    head1 = [_quant_in(Uint8ActPerTensorFixedPoint), _linear(16, classes), _quant_in()]
    return TinyEarlyExit(
        [nn.Sequential(*block0), nn.Sequential(*block1)], {"0": nn.Sequential(*head0), "1": nn.Sequential(*head1)}
    )


def make_model():
    return _build()


def make_float_scale_model():
    return _build(act_quant=Int8ActPerTensorFloat)


def make_per_channel_model():
    return _build(per_channel=True)


def make_float_bias_model():
    return _build(bias_quant=None)


def make_no_head_input_quant_model():
    return _build(head_input=False)


def make_bare_linear_head_model():
    """Head 0 is a single QuantLinear: no input quantiser, no output quantiser, no Sequential."""
    model = _build(head_input=False, head_output=False)
    model.heads["0"] = model.heads["0"][0]
    return model


def make_float_feature_model():
    """Head 0 starts with a QuantLinear that reads a float tensor (block 0 ends in a float ReLU)."""
    return _build(head_input=False, extra=QuantReLU(act_quant=None, return_quant_tensor=False))


def make_mixed_logit_widths_model():
    model = _build()
    model.heads["1"][-1] = QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=12, return_quant_tensor=True)
    return model


def make_wrong_classes_model():
    return _build(classes=7)


def make_unsupported_layer_model():
    return _build(extra=nn.Sigmoid())


def make_not_a_module():
    return "not a model"
