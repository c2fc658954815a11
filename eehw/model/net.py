"""Brevitas multi-exit networks: a list of backbone blocks plus exit heads keyed by block.

Every block and head is an ``nn.Sequential`` that starts with its own input quantiser, so each
can be exported, converted and simulated on its own (design.md section 2). All quantisers are
per-tensor power-of-two (``*FixedPoint``) and biases use ``Int16Bias``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch
from brevitas.nn import QuantConv1d, QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import (
    Int8ActPerTensorFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Int16Bias,
    Uint8ActPerTensorFixedPoint,
)
from torch import nn

from eehw.config import Backbone, Config, HeadType, ModelConfig
from eehw.errors import EehwError


class MultiExitNet(nn.Module):
    """``blocks`` run in order; ``heads[str(k)]`` reads the output of ``blocks[k]``.

    ``forward`` returns the logits of every head, shallowest first, as float tensors.
    """

    def __init__(self, blocks: list[nn.Module], heads: dict[int, nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.heads = nn.ModuleDict({str(k): h for k, h in sorted(heads.items())})

    def forward(self, x):
        outputs = []
        for k, block in enumerate(self.blocks):
            x = block(x)
            if str(k) in self.heads:
                outputs.append(float_value(self.heads[str(k)](x)))
        return outputs


def exit_positions(model: nn.Module) -> list[int]:
    """Block indices that carry a head, shallowest first."""
    return sorted(int(k) for k in model.heads.keys())


def float_value(t):
    """The float tensor behind a Brevitas QuantTensor (or the tensor itself)."""
    return t.value if hasattr(t, "value") and not isinstance(t, torch.Tensor) else t


def _input_quant(bits: int, signed: bool) -> QuantIdentity:
    quant = Int8ActPerTensorFixedPoint if signed else Uint8ActPerTensorFixedPoint
    return QuantIdentity(act_quant=quant, bit_width=bits, return_quant_tensor=True)


def _relu(bits: int) -> QuantReLU:
    return QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=bits, return_quant_tensor=True)


def _linear(n_in: int, n_out: int, bits: int) -> QuantLinear:
    return QuantLinear(
        n_in,
        n_out,
        bias=True,
        weight_quant=Int8WeightPerTensorFixedPoint,
        weight_bit_width=bits,
        bias_quant=Int16Bias,
        return_quant_tensor=True,
    )


def _conv(dims: int, c_in: int, c_out: int, kernel: int, bits: int) -> nn.Module:
    cls = QuantConv1d if dims == 1 else QuantConv2d
    return cls(
        c_in,
        c_out,
        kernel,
        padding=kernel // 2,
        bias=True,
        weight_quant=Int8WeightPerTensorFixedPoint,
        weight_bit_width=bits,
        bias_quant=Int16Bias,
        return_quant_tensor=True,
    )


def _pool(dims: int, size: int) -> nn.Module:
    return (nn.MaxPool1d if dims == 1 else nn.MaxPool2d)(size, ceil_mode=False)


def _logits(bits: int) -> QuantIdentity:
    return QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=bits, return_quant_tensor=True)


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int, input_signed: bool) -> MultiExitNet:
    """Build the network a YAML ``model`` section describes (not a factory model)."""
    if cfg.backbone == Backbone.MLP:
        return _build_mlp(cfg, input_shape, num_classes, input_signed)
    return _build_cnn(cfg, input_shape, num_classes, input_signed)


def _build_mlp(cfg, input_shape, num_classes, input_signed) -> MultiExitNet:
    n_in = 1
    for d in input_shape:
        n_in *= d
    blocks, widths = [], []
    for k, width in enumerate(cfg.widths):
        layers = [_input_quant(cfg.input_bits if k == 0 else cfg.act_bits, input_signed if k == 0 else False)]
        if k == 0 and len(input_shape) > 1:
            layers.append(nn.Flatten())
        layers += [_linear(n_in, width, cfg.weight_bits), _relu(cfg.act_bits)]
        blocks.append(nn.Sequential(*layers))
        widths.append(width)
        n_in = width
    heads = {
        e.after: nn.Sequential(
            _input_quant(cfg.act_bits, False),
            _linear(widths[e.after], num_classes, cfg.weight_bits),
            _logits(cfg.logit_bits),
        )
        for e in cfg.exits
    }
    return MultiExitNet(blocks, heads)


def _build_cnn(cfg, input_shape, num_classes, input_signed) -> MultiExitNet:
    dims = 1 if cfg.backbone == Backbone.CNN1D else 2
    if len(input_shape) != dims + 1:
        want = "(channels, length)" if dims == 1 else "(channels, height, width)"
        raise EehwError(
            f"backbone {cfg.backbone.value} needs inputs shaped {want}, the dataset gives {input_shape}; "
            f"use {'cnn2d' if len(input_shape) == 3 else 'cnn1d' if len(input_shape) == 2 else 'mlp'}"
        )
    channels, spatial = input_shape[0], list(input_shape[1:])
    blocks, shapes = [], []
    for k, (width, pool) in enumerate(zip(cfg.widths, cfg.pool)):
        layers = [
            _input_quant(cfg.input_bits if k == 0 else cfg.act_bits, input_signed if k == 0 else False),
            _conv(dims, channels, width, cfg.kernel, cfg.weight_bits),
            _relu(cfg.act_bits),
        ]
        if pool > 1:
            if any(s // pool < 1 for s in spatial):
                raise EehwError(
                    f"model.pool: block {k} pools {spatial} by {pool}, leaving nothing; "
                    f"use a smaller pool or fewer pooled blocks"
                )
            layers.append(_pool(dims, pool))
            spatial = [s // pool for s in spatial]
        blocks.append(nn.Sequential(*layers))
        channels = width
        shapes.append((channels, *spatial))
    heads = {e.after: _build_head(cfg, e.head, dims, shapes[e.after], num_classes) for e in cfg.exits}
    return MultiExitNet(blocks, heads)


def _build_head(cfg: ModelConfig, head: HeadType, dims: int, shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    channels, spatial = shape[0], list(shape[1:])
    layers: list[nn.Module] = [_input_quant(cfg.act_bits, False)]
    if head == HeadType.CONV_POOL_LINEAR:
        layers += [_conv(dims, channels, cfg.head_channels, cfg.kernel, cfg.weight_bits), _relu(cfg.act_bits)]
        channels = cfg.head_channels
    if head in (HeadType.POOL_LINEAR, HeadType.CONV_POOL_LINEAR):
        pool = min([cfg.head_pool] + spatial)
        if pool > 1:
            layers.append(_pool(dims, pool))
            spatial = [s // pool for s in spatial]
    n_in = channels
    for s in spatial:
        n_in *= s
    layers += [nn.Flatten(), _linear(n_in, num_classes, cfg.weight_bits), _logits(cfg.logit_bits)]
    return nn.Sequential(*layers)


def load_factory_model(cfg: Config) -> nn.Module:
    """Import ``module:function`` (from the config's folder or PYTHONPATH) and build the model."""
    module_name, _, func_name = cfg.model.factory.partition(":")
    base = str(Path(cfg.base_dir).resolve())
    added = base not in sys.path
    if added:
        sys.path.insert(0, base)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EehwError(
            f"model.factory: cannot import '{module_name}' ({exc}); put it next to the config or on PYTHONPATH"
        ) from None
    finally:
        if added:
            sys.path.remove(base)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise EehwError(f"model.factory: '{module_name}' has no function '{func_name}'")
    model = func()
    if not isinstance(model, nn.Module):
        raise EehwError(f"model.factory: {cfg.model.factory} returned {type(model).__name__}, not a torch.nn.Module")
    check_structure(model)
    complete_structure(model, cfg.model.logit_bits)
    return model


# Layers a block or head may be on its own: wrapped into a one-layer nn.Sequential.
SINGLE_LAYERS = (
    QuantIdentity,
    QuantReLU,
    QuantLinear,
    QuantConv1d,
    QuantConv2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.Flatten,
)
OUTPUT_QUANTISERS = (QuantIdentity, QuantReLU)


def _named_parts(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(f"blocks.{i}", b) for i, b in enumerate(model.blocks)] + [
        (f"heads.{k}", h) for k, h in model.heads.items()
    ]


def check_structure(model: nn.Module) -> None:
    """The multi-exit shape every later step relies on (blocks + heads keyed by block)."""
    blocks = getattr(model, "blocks", None)
    heads = getattr(model, "heads", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise EehwError("model: needs 'blocks', a non-empty nn.ModuleList of backbone segments applied in order")
    if not isinstance(heads, nn.ModuleDict) or len(heads) == 0:
        raise EehwError("model: needs 'heads', an nn.ModuleDict keyed by block index ('0', '1', ...)")
    for key in heads.keys():
        if not key.isdigit() or int(key) >= len(blocks):
            raise EehwError(f"model: heads['{key}'] does not name a block; keys are block indices 0..{len(blocks) - 1}")
    if str(len(blocks) - 1) not in heads:
        raise EehwError(f"model: the last block ({len(blocks) - 1}) has no head; it must carry the final classifier")
    for name, part in _named_parts(model):
        if not isinstance(part, (nn.Sequential, *SINGLE_LAYERS)):
            raise EehwError(
                f"model: {name} is a {type(part).__name__}; make each block and head an nn.Sequential "
                f"(or a single supported layer) so it can be exported layer by layer"
            )


def complete_structure(model: nn.Module, logit_bits: int) -> None:
    """Make a user's model take the shape the flow exports, before training, without changing
    what it computes except where stated:

    - a block or head that is a single layer becomes a one-layer nn.Sequential (the same module);
    - a head whose last layer is not a quantiser gets a QuantIdentity with ``logit_bits``-bit
      signed power-of-two output (Int8ActPerTensorFixedPoint: round half to even to a learned
      power-of-two scale, saturating), trained with the rest, so Brevitas and every later level
      compute the same quantised logits.

    Input quantisers of blocks and heads that read an already-quantised tensor are added after
    training by eehw.model.export.complete_input_quantisers, since their scale is the trained one.
    """
    for i, block in enumerate(model.blocks):
        if not isinstance(block, nn.Sequential):
            model.blocks[i] = nn.Sequential(block)
    for key in list(model.heads.keys()):
        head = model.heads[key]
        layers = list(head) if isinstance(head, nn.Sequential) else [head]
        if not layers or not isinstance(layers[-1], OUTPUT_QUANTISERS):
            layers.append(_logits(logit_bits))
        if not isinstance(head, nn.Sequential) or len(layers) != len(head):
            model.heads[key] = nn.Sequential(*layers)


def make_model(cfg: Config, input_shape: tuple[int, ...], num_classes: int, input_signed: bool) -> nn.Module:
    """The model a config asks for: built from the YAML description or by the user's factory."""
    torch.manual_seed(cfg.seed)
    if cfg.model.factory:
        return load_factory_model(cfg)
    return build_model(cfg.model, input_shape, num_classes, input_signed)
