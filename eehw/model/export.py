"""Brevitas multi-exit model -> golden integer model, enforcing the quantisation contract.

The contract (design.md section 2) is what makes Brevitas, the integer model, hls4ml and the
RTL agree bit for bit: per-tensor power-of-two scales, biases at input x weight scale, an input
quantiser at the start of every block and head. Export is where it is checked, so a model that
breaks it is refused here with one line naming the layer and the fix.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from brevitas.nn import QuantConv1d, QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant.fixed_point import Int8ActPerTensorFixedPointMinMaxInit, Uint8ActPerTensorFixedPointMaxInit
from torch import nn

from eehw.errors import EehwError, first_line
from eehw.model.golden import Conv, Dense, Flatten, GoldenModel, IntBlock, MaxPool, Quant, int_range
from eehw.model.net import check_structure, exit_positions, float_value

# Float32 holds integers exactly up to 2**24: beyond that Brevitas's float arithmetic rounds and
# no integer model can match it.
FLOAT32_EXACT = 1 << 24

INPUT_QUANTISERS = (QuantIdentity, QuantReLU)
SUPPORTED = "QuantIdentity, QuantReLU, QuantLinear, QuantConv1d, QuantConv2d, MaxPool1d/2d, Flatten, Dropout, Identity"


class ContractError(EehwError):
    """A model that the bit-exact flow cannot take."""


def _parts(model: nn.Module) -> list[tuple[str, nn.Sequential]]:
    """Blocks and heads in execution order: block k, then the head reading it."""
    parts = []
    for k, block in enumerate(model.blocks):
        parts.append((f"blocks.{k}", block))
        if str(k) in model.heads:
            parts.append((f"heads.{k}", model.heads[str(k)]))
    return parts


def _capture(model: nn.Module, x: torch.Tensor) -> dict[str, tuple]:
    """Run the model once and keep every layer's input and output (QuantTensors included)."""
    seen: dict[str, tuple] = {}
    current = {"layer": None}
    handles = []
    for part_name, part in _parts(model):
        for i, layer in enumerate(part):
            name = f"{part_name}.{i}"

            def pre(mod, args, name=name):
                current["layer"] = name

            def post(mod, args, out, name=name):
                seen[name] = (args[0], out)

            handles.append(layer.register_forward_pre_hook(pre))
            handles.append(layer.register_forward_hook(post))
    try:
        with torch.no_grad():
            model(x)
    except Exception as exc:  # a Brevitas failure inside a user's model, reported as the layer it hit
        layer = current["layer"]
        hint = (
            "the layer before it must return a QuantTensor (return_quant_tensor=True)"
            if "scale" in str(exc).lower() or "quant" in str(exc).lower()
            else str(exc).splitlines()[0]
        )
        raise ContractError(f"layer {layer} failed in a quantised forward pass: {hint}") from None
    finally:
        for h in handles:
            h.remove()
    return seen


def _pow2_exp(scale: torch.Tensor, layer: str, what: str, fix: str) -> int:
    values = scale.detach().flatten()
    if values.numel() != 1:
        raise ContractError(
            f"layer {layer} has per-channel {what} scales ({values.numel()} of them): "
            f"use a per-tensor power-of-two quantiser ({fix})"
        )
    value = float(values[0])
    if not value > 0:
        raise ContractError(f"layer {layer} has a non-positive {what} scale {value}")
    if value < 1e-8:  # Brevitas's floor for a scale whose statistics saw only zeros
        raise ContractError(
            f"layer {layer}: {what} scale collapsed to {value:.3g}, its quantiser saw (almost) only "
            f"zeros; check the layers before it (a dead ReLU, a zero input) and train or calibrate"
        )
    exp = round(math.log2(value))
    if value != 2.0**exp:
        raise ContractError(
            f"layer {layer}: {what} scale {value:.6g} is not a power of two: use a *FixedPoint quantiser ({fix})"
        )
    return exp


def _is_quant(t) -> bool:
    return hasattr(t, "scale") and hasattr(t, "bit_width") and not isinstance(t, torch.Tensor)


def _zero_point_is_zero(t, layer: str) -> None:
    zp = getattr(t, "zero_point", None)
    if zp is not None and torch.any(torch.as_tensor(zp) != 0):
        raise ContractError(f"layer {layer} has a non-zero zero point: use a symmetric *FixedPoint quantiser")


def _quant_op(layer_name: str, layer: nn.Module, out, in_exp: int | None) -> Quant:
    if not layer.act_quant.is_quant_enabled:
        raise ContractError(
            f"layer {layer_name} ({type(layer).__name__}) has quantisation disabled: "
            f"give it an act_quant such as Int8ActPerTensorFixedPoint"
        )
    if not _is_quant(out):
        raise ContractError(
            f"layer {layer_name} ({type(layer).__name__}) returns a float tensor: set return_quant_tensor=True"
        )
    _zero_point_is_zero(out, layer_name)
    exp = _pow2_exp(out.scale, layer_name, "activation", "Int8ActPerTensorFixedPoint / Uint8ActPerTensorFixedPoint")
    narrow = bool(layer.act_quant.is_narrow_range)
    return Quant(layer_name, in_exp, exp, int(out.bit_width), bool(out.signed), narrow)


def _weight_op(layer_name: str, layer: nn.Module, inp, in_exp: int, in_range: tuple[int, int]):
    if not _is_quant(inp):
        raise ContractError(
            f"layer {layer_name} ({type(layer).__name__}) receives a float tensor: "
            f"put a quantiser before it with return_quant_tensor=True"
        )
    if layer.output_quant.is_quant_enabled or layer.input_quant.is_quant_enabled:
        raise ContractError(
            f"layer {layer_name} quantises its own input or output: remove input_quant/output_quant "
            f"and use a separate QuantIdentity or QuantReLU"
        )
    if not layer.weight_quant.is_quant_enabled:
        raise ContractError(f"layer {layer_name} has float weights: use weight_quant=Int8WeightPerTensorFixedPoint")
    qw = layer.quant_weight()
    _zero_point_is_zero(qw, layer_name)
    w_exp = _pow2_exp(qw.scale, layer_name, "weight", "Int8WeightPerTensorFixedPoint")
    weight = qw.int().detach().numpy().astype(np.int64)
    bias = None
    if layer.bias is not None:
        bq = layer.bias_quant
        if not bq.is_quant_enabled or not getattr(bq, "requires_input_scale", False):
            raise ContractError(
                f"layer {layer_name} has a float bias or a bias with its own scale: "
                f"use bias_quant=Int16Bias (scale = input scale x weight scale)"
            )
        qb = bq(layer.bias, inp, qw)
        b_exp = _pow2_exp(qb.scale, layer_name, "bias", "Int16Bias")
        if b_exp != in_exp + w_exp:
            raise ContractError(
                f"layer {layer_name} bias scale 2^{b_exp} differs from input x weight scale "
                f"2^{in_exp + w_exp}: use bias_quant=Int16Bias"
            )
        bias = qb.int().detach().numpy().astype(np.int64).reshape(-1)
    # Brevitas computes in float32: the accumulator must stay exactly representable.
    peak = max(abs(in_range[0]), abs(in_range[1]))
    rows = np.abs(weight.reshape(weight.shape[0], -1)).sum(axis=1) * peak
    if bias is not None:
        rows = rows + np.abs(bias)
    if rows.max() >= FLOAT32_EXACT:
        raise ContractError(
            f"layer {layer_name} can accumulate up to {int(rows.max())} (>= 2^24), beyond float32 "
            f"exactness: lower its weight or input bit width or its fan-in"
        )
    bits = int(qw.bit_width)
    if isinstance(layer, QuantLinear):
        return Dense(layer_name, weight, bias, in_exp, w_exp, bits)
    if layer.groups != 1 or any(d != 1 for d in layer.dilation) or layer.padding_mode != "zeros":
        raise ContractError(f"layer {layer_name}: only groups=1, dilation=1, zero padding convolutions are supported")
    if isinstance(layer.padding, str):
        raise ContractError(f"layer {layer_name}: give padding as integers, not '{layer.padding}'")
    return Conv(layer_name, weight, bias, in_exp, w_exp, bits, tuple(layer.stride), tuple(layer.padding))


def _pool_op(layer_name: str, layer: nn.Module) -> MaxPool:
    dims = 1 if isinstance(layer, nn.MaxPool1d) else 2

    def tup(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims

    stride = layer.stride if layer.stride is not None else layer.kernel_size
    if any(p != 0 for p in tup(layer.padding)) or any(d != 1 for d in tup(layer.dilation)) or layer.ceil_mode:
        raise ContractError(f"layer {layer_name}: max pooling needs padding=0, dilation=1, ceil_mode=False")
    return MaxPool(layer_name, tup(layer.kernel_size), tup(stride))


def fixed_input_quant(exp: int, bits: int, signed: bool) -> QuantIdentity:
    """A QuantIdentity at scale 2^exp, ``bits`` wide: the identity on any tensor already on that
    grid and range (a QuantReLU's or QuantIdentity's output), frozen so training cannot move it."""
    scale = 2.0**exp
    if signed:
        quant = QuantIdentity(
            act_quant=Int8ActPerTensorFixedPointMinMaxInit,
            bit_width=bits,
            min_val=-scale * (1 << (bits - 1)),
            max_val=scale * ((1 << (bits - 1)) - 1),
            return_quant_tensor=True,
        )
    else:
        quant = QuantIdentity(
            act_quant=Uint8ActPerTensorFixedPointMaxInit,
            bit_width=bits,
            max_val=scale * ((1 << bits) - 1),
            return_quant_tensor=True,
        )
    for param in quant.parameters():
        param.requires_grad_(False)
    return quant.eval()


def complete_input_quantisers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Give every block and head that starts without an input quantiser, but reads a tensor
    that is already quantised per tensor at a power-of-two scale, the quantiser that is the
    identity on it (its own bits, signedness and scale), in place; the names of the parts
    completed. A part that reads a float tensor is refused: nothing exact can be inserted."""
    check_structure(model)
    missing = [(name, part) for name, part in _parts(model) if len(part) and not isinstance(part[0], INPUT_QUANTISERS)]
    if not missing:
        return []
    if missing[0][0] == "blocks.0":
        got = type(missing[0][1][0]).__name__
        raise ContractError(
            f"blocks.0 starts with {got}: the first block needs an input quantiser for the float "
            f"input; add brevitas.nn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, "
            f"return_quant_tensor=True) as its first layer"
        )
    model.eval()
    seen = _capture(model, example[:2])
    done = []
    for name, part in missing:
        inp, _ = seen[f"{name}.0"]
        if not _is_quant(inp):
            raise ContractError(
                f"{name} starts with {type(part[0]).__name__} and reads a float tensor: end the layer "
                f"before it with a quantiser (QuantReLU/QuantIdentity, return_quant_tensor=True) or "
                f"start {name} with a QuantIdentity"
            )
        _zero_point_is_zero(inp, name)
        exp = _pow2_exp(inp.scale, name, "input", "end the layer before it with a *FixedPoint quantiser")
        quant = fixed_input_quant(exp, int(inp.bit_width), bool(inp.signed))
        completed = nn.Sequential(quant, *part)
        kind, index = name.split(".")
        if kind == "blocks":
            model.blocks[int(index)] = completed
        else:
            model.heads[index] = completed
        done.append(name)
    return done


def check_contract(model: nn.Module, example: torch.Tensor, num_classes: int) -> None:
    """The whole contract on an untrained instance (a copy: the model is left as it is), so a
    model the flow cannot take is refused before the first epoch: the structure, every layer,
    quantiser, scale and bias, and one (N, num_classes) logit tensor per head."""
    probe = copy.deepcopy(model).eval()
    check_structure(probe)
    with torch.no_grad():
        try:
            outputs = probe(example[:2])
        except Exception as exc:  # the user's forward, reported as one line
            raise ContractError(
                f"model: forward fails on a batch shaped {tuple(example[:2].shape)}: {first_line(exc)}"
            ) from None
    if not isinstance(outputs, (list, tuple)):
        raise ContractError(
            f"model: forward must return a list with one logit tensor per head, shallowest first; "
            f"it returned {type(outputs).__name__}"
        )
    if len(outputs) != len(probe.heads):
        raise ContractError(
            f"model: forward returns {len(outputs)} outputs for {len(probe.heads)} heads; "
            f"return every head's logits, shallowest first"
        )
    for position, out in zip(exit_positions(probe), outputs):
        shape = tuple(float_value(out).shape)
        if shape != (len(example[:2]), num_classes):
            raise ContractError(
                f"model: heads.{position} returns logits shaped {shape[1:]} per sample; the dataset has "
                f"{num_classes} classes, so each head must return ({num_classes},)"
            )
    golden = export_golden(probe, example)
    formats = {k: (golden.heads[k].out_bits, golden.heads[k].out_signed) for k in golden.exits}
    if len(set(formats.values())) > 1:
        listed = ", ".join(f"heads.{k}: {b}-bit {'signed' if s else 'unsigned'}" for k, (b, s) in formats.items())
        raise ContractError(
            f"model: the heads' logits differ in format ({listed}); their decisions share one result "
            f"stream, so give every head's output quantiser the same bit width and signedness"
        )


def export_golden(model: nn.Module, example: torch.Tensor) -> GoldenModel:
    """Read a trained model's integer weights, biases and exponents into a GoldenModel (first
    completing its input quantisers in place, see complete_input_quantisers)."""
    complete_input_quantisers(model, example)
    model.eval()
    seen = _capture(model, example[:2])
    blocks, heads = [], {}
    block_state: tuple[int | None, int, int, bool] = (None, 0, 0, True)  # exp, lo, hi, signed of the last block out
    for part_name, part in _parts(model):
        kind, index = part_name.split(".")
        index = int(index)
        first = part[0] if len(part) else None
        if not isinstance(first, INPUT_QUANTISERS):
            got = type(first).__name__ if first is not None else "nothing"
            raise ContractError(
                f"{part_name} starts with {got}: every block and head needs an input quantiser; "
                f"add brevitas.nn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, "
                f"return_quant_tensor=True) as its first layer"
            )
        exp, lo, hi, signed = block_state  # a head reads its block; a block reads the one before
        ops = []
        for i, layer in enumerate(part):
            name = f"{part_name}.{i}"
            if isinstance(layer, (nn.Dropout, nn.Identity)):
                continue
            if name not in seen:
                raise ContractError(f"layer {name} is never run by the model's forward")
            inp, out = seen[name]
            if isinstance(layer, INPUT_QUANTISERS):
                op = _quant_op(name, layer, out, exp)
                exp, signed = op.out_exp, op.signed
                lo, hi = int_range(op.bits, op.signed, op.narrow)
            elif isinstance(layer, (QuantLinear, QuantConv1d, QuantConv2d)):
                op = _weight_op(name, layer, inp, exp, (lo, hi))
                w = op.weight.reshape(op.weight.shape[0], -1)
                pos = np.where(w > 0, w, 0).sum(1) * hi + np.where(w < 0, w, 0).sum(1) * lo
                neg = np.where(w > 0, w, 0).sum(1) * lo + np.where(w < 0, w, 0).sum(1) * hi
                b = op.bias if op.bias is not None else 0
                lo, hi, signed, exp = int((neg + b).min()), int((pos + b).max()), True, op.out_exp
            elif isinstance(layer, (nn.MaxPool1d, nn.MaxPool2d)):
                op = _pool_op(name, layer)
            elif isinstance(layer, nn.Flatten):
                if layer.start_dim != 1 or layer.end_dim != -1:
                    raise ContractError(f"layer {name}: only Flatten(start_dim=1, end_dim=-1) is supported")
                op = Flatten(name)
            else:
                raise ContractError(f"layer {name} ({type(layer).__name__}) is not supported; supported: {SUPPORTED}")
            ops.append(op)
        in_t, _ = seen[f"{part_name}.0"]
        _, out_t = seen[f"{part_name}.{len(part) - 1}"]
        bits = max(int(hi).bit_length(), int(-lo - 1).bit_length() if lo < 0 else 0) + int(signed)
        int_block = IntBlock(
            part_name,
            tuple(ops),
            tuple(float_value(in_t).shape[1:]),
            tuple(float_value(out_t).shape[1:]),
            exp,
            bits,
            signed,
        )
        if kind == "blocks":
            blocks.append(int_block)
            block_state = (exp, lo, hi, signed)
        else:
            heads[index] = int_block
    num_classes = heads[exit_positions(model)[-1]].out_shape[-1]
    return GoldenModel(tuple(blocks), heads, num_classes)


def brevitas_int_logits(model: nn.Module, x: np.ndarray, golden: GoldenModel, batch: int = 1024) -> list[np.ndarray]:
    """Brevitas's own logits in integer units of each head's exponent (NaN-free, exactly integral
    when the contract holds; a non-integral value is returned rounded and will show as a mismatch)."""
    model.eval()
    outs: list[list[np.ndarray]] = [[] for _ in golden.exits]
    with torch.no_grad():
        for start in range(0, len(x), batch):
            logits = model(torch.from_numpy(np.asarray(x[start : start + batch], dtype=np.float32)))
            for k, (z, e) in enumerate(zip(logits, golden.logit_exps)):
                scaled = float_value(z).double().numpy() * 2.0**-e
                as_int = np.rint(scaled)
                as_int[scaled != as_int] = np.iinfo(np.int32).min  # not integral: can never match
                outs[k].append(as_int.astype(np.int64))
    return [np.concatenate(o) for o in outs]
