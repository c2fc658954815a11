"""hls4ml conversion of one QONNX block, and the precision check that keeps it bit-exact with the golden model."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from eehw.board import Board
from eehw.cache import code_hash
from eehw.errors import EehwError, first_line
from eehw.hw.hls.settings import RECIPE, FixedType, HlsSettings, strategy_for
from eehw.model.golden import Conv, Dense, IntBlock, Quant, int_range
from eehw.paths import shipped


@contextlib.contextmanager
def _hls4ml_fixes():
    """Work around hls4ml 1.3.0's ONNX parser for 1-D pooling, which reads a channels-last
    (N, L, C) input as channels-first and never sets pad_left/pad_right. Restored on exit."""
    import importlib

    # hls4ml.converters re-exports a function named onnx_to_hls that hides the module
    onnx_to_hls = importlib.import_module("hls4ml.converters.onnx_to_hls")
    saved = {op: onnx_to_hls.layer_handlers[op] for op in ("MaxPool", "AveragePool")}

    def fixed(original):
        def handler(node, input_names, input_shapes, graph):
            layer = original(node, input_names, input_shapes, graph)
            if layer["class_name"].endswith("Pooling1D"):
                _, length, channels = input_shapes[0]
                pad_left, pad_right = (list(layer.get("pads") or []) + [0, 0])[:2]
                dilation = (layer.get("dilations") or [1])[0]
                span = (layer["pool_width"] - 1) * dilation + 1
                layer.update(
                    n_in=length,
                    n_filt=channels,
                    pad_left=pad_left,
                    pad_right=pad_right,
                    n_out=(length + pad_left + pad_right - span) // layer["stride_width"] + 1,
                )
            return layer

        return handler

    for op, original in saved.items():
        onnx_to_hls.layer_handlers[op] = fixed(original)
    try:
        yield
    finally:
        onnx_to_hls.layer_handlers.update(saved)


def hls_config(model, in_type: FixedType, settings: HlsSettings, backend: str) -> dict:
    """hls4ml config at 'name' granularity: every layer explicit, the input at its Brevitas type."""
    import hls4ml

    with contextlib.redirect_stdout(io.StringIO()), _hls4ml_fixes():
        config = hls4ml.utils.config_from_onnx_model(
            model, granularity="name", backend=backend, default_reuse_factor=settings.reuse_factor
        )
    config["Model"]["Strategy"] = settings.strategy
    config["Model"]["ReuseFactor"] = settings.reuse_factor
    layers = config["LayerName"]
    layers.setdefault(model.graph.input[0].name, {}).setdefault("Precision", {})["result"] = in_type.hls
    for layer in layers.values():
        if "ReuseFactor" in layer:
            layer["ReuseFactor"] = settings.reuse_factor
        layer["Strategy"] = settings.strategy
    if settings.reuse_factors:
        weighted = [n.name for n in model.graph.node if n.op_type in WEIGHTED_OPS]
        if len(weighted) != len(settings.reuse_factors):
            raise EehwError(
                f"hls settings: {len(settings.reuse_factors)} reuse factors for {len(weighted)} "
                f"weighted layers ({', '.join(weighted)})"
            )
        for name, rf in zip(weighted, settings.reuse_factors):
            layers.setdefault(name, {}).update(ReuseFactor=rf, Strategy=strategy_for(rf))
    return config


#: ONNX nodes that become hls4ml layers with a ReuseFactor, one per golden Dense / Conv.
WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")


def used_reuse_factors(graph) -> list[int]:
    """The ReuseFactor hls4ml built each weighted layer with (it may move a requested one)."""
    return [
        int(layer.get_attr("reuse_factor"))
        for layer in graph.get_layers()
        if layer.class_name in ("Dense", "Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D")
    ]


def content_key(model, config: dict, project_name: str, backend: str, board: Board, settings: HlsSettings) -> str:
    import hls4ml

    h = hashlib.sha256()
    h.update(model.model.SerializeToString(deterministic=True))
    # The code that converts and compiles (this module, the decision unit's layer and C++ header).
    code = code_hash(
        "eehw.hw.hls.settings",
        "eehw.hw.hls.qonnx_export",
        "eehw.hw.hls.convert",
        "eehw.hw.hls.decision",
        "eehw.hw.hls.decision_layer",
        shipped("hls_templates") / "nnet_utils",
    )
    h.update(
        json.dumps(
            {
                "config": config,
                "hls4ml": hls4ml.__version__,
                "recipe": RECIPE,
                "code": code,
                "project": project_name,
                "backend": backend,
                "part": board.part,
                "clock": board.clock_period_ns,
                "settings": asdict(settings),
            },
            sort_keys=True,
            default=str,
        ).encode()
    )
    return h.hexdigest()[:20]


def _clock(board: Board):
    period = board.clock_period_ns
    return int(period) if float(period).is_integer() else period


def convert(
    model,
    config: dict,
    project_dir: Path,
    project_name: str,
    backend: str,
    board: Board,
    settings: HlsSettings,
    block: IntBlock,
    log: io.StringIO,
):
    import hls4ml

    try:
        with contextlib.redirect_stdout(log), _hls4ml_fixes():
            graph = hls4ml.converters.convert_from_onnx_model(
                model,
                output_dir=str(project_dir),
                project_name=project_name,
                backend=backend,
                hls_config=config,
                part=board.part,
                clock_period=_clock(board),
                io_type=settings.io_type,
                # Weights from the headers only: a C-sim library that reads weights/*.txt at run time
                # has their absolute path compiled in (and exits when it moves), so it could not be cached.
                write_weights_txt=False,
            )
    except Exception as exc:  # hls4ml raises bare Exceptions; keep the line that names the problem
        raise EehwError(f"{block.name}: hls4ml cannot convert it: {first_line(exc)}") from None
    return graph


# --------------------------------------------------------------------------- precision checks


def _fixed(precision) -> tuple[int, int, bool] | None:
    """(width, integer bits, signed) of an hls4ml fixed/int precision, None for anything else."""
    width, integer, signed = (getattr(precision, a, None) for a in ("width", "integer", "signed"))
    if width is None or integer is None:
        return None
    return int(width), int(integer), bool(signed)


def _mode(precision, attr: str) -> str:
    value = getattr(precision, attr, None)
    return getattr(value, "name", str(value)) if value is not None else "None"


def _represents(outer, inner) -> bool:
    """Every value of ``inner`` is exactly a value of ``outer``."""
    ow, oi, os_ = outer
    iw, ii, is_ = inner
    if ow - oi < iw - ii:  # fewer fractional bits
        return False
    if is_ and not os_:
        return False
    return oi - int(os_) >= ii - int(is_)


def check_precisions(graph, block: IntBlock, in_type: FixedType) -> None:
    """Refuse a converted project whose types could round, truncate or wrap unlike the golden model."""
    want_in = (in_type.bits, in_type.bits + in_type.exp, in_type.signed)
    got_in = _fixed(graph.get_input_variables()[0].type.precision)
    if got_in != want_in:
        raise EehwError(
            f"{block.name}: hls4ml input precision is {graph.get_input_variables()[0].type.precision}, "
            f"expected the Brevitas type {in_type.hls}"
        )
    out_t = FixedType.of_output(block)
    want_out = (out_t.bits, out_t.bits + out_t.exp, out_t.signed)
    got_out = _fixed(graph.get_output_variables()[0].type.precision)
    if got_out != want_out:
        raise EehwError(
            f"{block.name}: hls4ml output precision is {graph.get_output_variables()[0].type.precision}, "
            f"the golden model's is {out_t.hls}"
        )
    weight_ops = [op for op in block.ops if isinstance(op, (Dense, Conv))]
    lo = hi = None
    for layer in graph.get_layers():
        result = layer.get_output_variable().type.precision
        fixed = _fixed(result)
        where = f"{block.name}: hls4ml layer {layer.name} ({layer.class_name})"
        if fixed is None:
            raise EehwError(f"{where} has non-fixed-point result type {result}")
        if layer.class_name in ("Dense", "Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D"):
            if not weight_ops:
                raise EehwError(f"{where} has no matching weight layer in the golden model")
            op = weight_ops.pop(0)
            needed = _acc_type(op, lo, hi)
            accum = layer.get_attr("accum_t")
            if accum is None or _fixed(accum.precision) is None or not _represents(_fixed(accum.precision), needed):
                raise EehwError(
                    f"{where}: accum_t {accum.precision if accum else None} cannot hold the accumulator "
                    f"(width {needed[0]}, {needed[0] - needed[1]} fractional bits)"
                )
            if not _represents(fixed, needed):
                # hls4ml folded the following quantiser into the layer's output cast: it must be
                # that quantiser exactly, rounding half to even and saturating.
                follow = block.ops[block.ops.index(op) + 1] if block.ops.index(op) + 1 < len(block.ops) else None
                want = (follow.bits, follow.bits + follow.out_exp, follow.signed) if isinstance(follow, Quant) else None
                if (
                    fixed != want
                    or _mode(result, "rounding_mode") != "RND_CONV"
                    or _mode(result, "saturation_mode") not in ("SAT", "SAT_SYM")
                ):
                    raise EehwError(f"{where}: result_t {result} narrows the accumulator unlike the golden model")
        elif layer.class_name in ("Activation", "ReLU", "Input") or layer.class_name.endswith("Quant"):
            if layer.class_name != "Input":
                if _mode(result, "rounding_mode") != "RND_CONV" or _mode(result, "saturation_mode") not in (
                    "SAT",
                    "SAT_SYM",
                ):
                    raise EehwError(
                        f"{where} requantises with {result}; the golden model rounds half to even "
                        f"and saturates (RND_CONV, SAT)"
                    )
            lo, hi = _range(fixed)
        else:  # reshape, transpose, pooling: must carry their input exactly
            inp = _fixed(layer.get_input_variable().type.precision)
            if inp is None or not _represents(fixed, inp):
                raise EehwError(f"{where} narrows {layer.get_input_variable().type.precision} to {result}")
    if weight_ops:
        raise EehwError(f"{block.name}: hls4ml has no layer for golden {weight_ops[0].name}")


def _range(fixed: tuple[int, int, bool]) -> tuple[int, int]:
    """Integer range (in units of the type's LSB) of (width, integer, signed)."""
    width, _, signed = fixed
    return int_range(width, signed)


def _acc_type(op: Dense | Conv, lo: int | None, hi: int | None) -> tuple[int, int, bool]:
    """The fixed type the golden accumulator needs for inputs in [lo, hi] (LSB units of the input)."""
    w = op.weight.reshape(op.weight.shape[0], -1)
    if lo is None:
        lo, hi = -(1 << 31), (1 << 31) - 1
    pos = np.where(w > 0, w, 0).sum(1) * hi + np.where(w < 0, w, 0).sum(1) * lo
    neg = np.where(w > 0, w, 0).sum(1) * lo + np.where(w < 0, w, 0).sum(1) * hi
    b = op.bias if op.bias is not None else 0
    top, bottom = int((pos + b).max()), int((neg + b).min())
    width = max(top.bit_length(), (-bottom - 1).bit_length() if bottom < 0 else 0) + 1
    return width, width + op.out_exp, True
