"""Brevitas -> QONNX export of one block or head, channels-last end to end (hls4ml cannot split a branched graph)."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import torch
from torch import nn

from eehw.errors import EehwError, first_line
from eehw.model.golden import Conv, IntBlock, MaxPool
from eehw.model.net import float_value

REWRITTEN_BY_QONNX = {"Gemm"}


def _supported_onnx_ops() -> set[str]:
    from hls4ml.converters.onnx_to_hls import get_supported_onnx_layers

    return set(get_supported_onnx_layers())


def _layer_of(node_name: str, block_name: str) -> str:
    """The Brevitas layer an exported node comes from: torch names nodes '/inner/inner.<index>/<Op>'."""
    match = re.search(r"/inner\.(\d+)/", node_name)
    return f"{block_name}.{match.group(1)}" if match else node_name or "?"


class _ValueOnly(nn.Module):
    """Returns the tensor of a QuantTensor output: exported as is, its scale, zero point and bit
    width would become extra graph outputs (and hls4ml would lose their shapes)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return float_value(self.inner(x))


def export_block(module: nn.Module, block: IntBlock):
    """Brevitas block or head -> cleaned QONNX ModelWrapper, channels-last input and output."""
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    module.eval()
    example = torch.zeros(1, *block.in_shape)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            proto = export_qonnx(_ValueOnly(module), example, dynamo=False)
    except Exception as exc:  # Brevitas/torch.onnx failure: report it as this block's, in one line
        raise EehwError(f"{block.name}: QONNX export failed: {first_line(exc)}") from None
    supported = _supported_onnx_ops() | REWRITTEN_BY_QONNX
    for node in proto.graph.node:
        if node.op_type not in supported:
            raise EehwError(
                f"{block.name}: hls4ml cannot convert layer {_layer_of(node.name, block.name)} "
                f"(ONNX op {node.op_type}); use a layer the golden model supports or replace it"
            )
    model = ModelWrapper(proto)
    # Only layout-dependent graphs need it. A single-channel input is the same in either layout,
    # and on a dense block that flattens a (1, H, W) input the transform leaves an input transpose
    # that breaks qonnx's tensor renaming.
    multichannel = len(block.in_shape) > 1 and block.in_shape[0] > 1
    spatial = multichannel or any(isinstance(op, (Conv, MaxPool)) for op in block.ops)
    try:
        model = cleanup_model(model)
        if spatial:
            model = model.transform(ConvertToChannelsLastAndClean(make_input_channels_last=True))
        model = model.transform(GemmToMatMul())
        model = cleanup_model(model)
        model = _drop_output_transpose(model)
    except Exception as exc:
        raise EehwError(f"{block.name}: qonnx clean-up failed: {first_line(exc)}") from None
    _check_layout(model, block)
    return model


def _drop_output_transpose(model):
    """Keep the block output channels-last: remove the final channels-last -> first transpose."""
    from onnx import helper
    from qonnx.util.cleanup import cleanup_model

    out = model.graph.output[0]
    node = model.find_producer(out.name)
    if node is None or node.op_type != "Transpose":
        return model
    perm = list(helper.get_attribute_value(next(a for a in node.attribute if a.name == "perm")))
    rank = len(perm)
    if perm != [0, rank - 1] + list(range(1, rank - 1)):
        return model
    src = node.input[0]
    shape = model.get_tensor_shape(src)
    model.graph.node.remove(node)
    model.graph.output.remove(out)
    for info in [v for v in model.graph.value_info if v.name == src]:
        model.graph.value_info.remove(info)
    model.graph.output.append(helper.make_tensor_value_info(src, out.type.tensor_type.elem_type, shape))
    return cleanup_model(model)


def channels_last_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(C, *spatial) -> (*spatial, C); flat vectors stay as they are."""
    return tuple(shape[1:]) + (shape[0],) if len(shape) > 1 else tuple(shape)


def to_channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) -> (N, *spatial, C); (N, F) unchanged."""
    return np.moveaxis(x, 1, -1) if x.ndim > 2 else x


def _check_layout(model, block: IntBlock) -> None:
    got_in = tuple(model.get_tensor_shape(model.graph.input[0].name))[1:]
    got_out = tuple(model.get_tensor_shape(model.graph.output[0].name))[1:]
    want_in, want_out = channels_last_shape(block.in_shape), channels_last_shape(block.out_shape)
    if got_in == tuple(block.in_shape) and len(got_in) > 1 and got_in[0] == 1:
        got_in = want_in  # a dense block on one channel: channels-first and -last are the same order
    if got_in != want_in or got_out != want_out:
        raise EehwError(
            f"{block.name}: QONNX graph is {got_in} -> {got_out}, expected channels-last "
            f"{want_in} -> {want_out}; the block has a layout qonnx could not make channels-last"
        )


def head_graph(model, head: IntBlock):
    """The cleaned QONNX graph of an exit head, just before hls4ml converts it.

    This is where ``eehw.hw.hls.decision_layer`` appends the confidence decision unit, so that a head and
    its decision unit are one hls4ml project. Without it the head ends at its integer logits.
    """
    return model
