"""Per-block hls4ml projects: every backbone block and exit head becomes its own hls4ml project.

hls4ml 1.3.0 cannot split a branched ONNX graph (design.md section 2), so each block and head is
exported on its own: Brevitas -> QONNX (``export_qonnx``, ``dynamo=False``) -> qonnx cleanup,
channels-last, Gemm -> MatMul -> ``hls4ml.converters.convert_from_onnx_model``. Block boundaries
are channels-last end to end: a block's trailing transpose back to channels-first is dropped, so
the tensor it hands to the next block (and to its head) is the one the hardware streams.

Bit-exactness rests on the quantisation contract: every project's input precision is the exact
Brevitas type entering the block (never hls4ml's default ``fixed<16,6>``), and after conversion
every layer's precision is checked against the golden model (requantisers round half to even and
saturate, accumulators hold the full sum, nothing else narrows).

``compile()`` (g++, several seconds a block) is cached by content hash (QONNX bytes, hls4ml
config and version, backend, part, clock, settings, and the source of this module, of
eehw.hls_decision and of ``hls_templates/nnet_utils``) under ``cache_dir()/hls4ml/<project>-<key>``.
hls4ml 1.3.0 cannot attach an existing library to a ModelGraph (``compile()`` always rewrites the
project with a new stamp and reruns g++), so a hit copies the compiled project, ``.so`` included,
into the design's folder and runs it through hls4ml's own C bridge (``<project>_double``, the
function ``ModelGraph.predict`` calls) without converting or compiling again. The copy works
because projects are written with ``write_weights_txt=False``: otherwise the C-sim reads
``weights/*.txt`` from the absolute path it was compiled in and exits when that is gone.
Cache misses compile in parallel (g++ subprocesses), one per core.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import numpy.ctypeslib as npc
import torch
from torch import nn

from eehw.board import Board
from eehw.cache import atomic_write_text, code_hash, load_json
from eehw.errors import EehwError
from eehw.golden import Conv, Dense, GoldenModel, IntBlock, MaxPool, Quant, int_range
from eehw.model import float_value
from eehw.paths import cache_dir, shipped
from eehw.progress import progress

#: Bump when the export/conversion recipe changes, so old cached projects are not reused.
RECIPE = 1

BACKENDS = ("Vitis", "Vivado")
STRATEGIES = ("Latency", "Resource")
IO_TYPES = ("io_parallel", "io_stream")

_META = "eehw_block.json"

#: ONNX ops hls4ml does not take but the qonnx recipe rewrites into ones it does.
REWRITTEN_BY_QONNX = {"Gemm"}


# --------------------------------------------------------------------------- types and settings

@dataclass(frozen=True)
class FixedType:
    """A quantised tensor type: ``bits``-bit integers at exponent ``exp`` (value = q * 2**exp)."""

    bits: int
    exp: int
    signed: bool

    @property
    def hls(self) -> str:
        """The hls4ml precision string: ap_[u]fixed<W, I> with I = W + exp integer bits."""
        return f"{'fixed' if self.signed else 'ufixed'}<{self.bits},{self.bits + self.exp}>"

    @classmethod
    def of_quant(cls, op: Quant) -> FixedType:
        return cls(op.bits, op.out_exp, op.signed)

    @classmethod
    def of_output(cls, block: IntBlock) -> FixedType:
        return cls(block.out_bits, block.out_exp, block.out_signed)


@dataclass(frozen=True)
class HlsSettings:
    """hls4ml knobs of one block: ``reuse_factor`` and ``strategy`` for every layer, or
    ``reuse_factors`` per weighted layer (Conv / MatMul, in graph order) as ``settings_from_plan``
    derives them from the RTL's SIMD x PE lanes."""

    reuse_factor: int = 1
    strategy: str = "Latency"
    io_type: str = "io_parallel"
    reuse_factors: tuple[int, ...] = ()

    def __post_init__(self):
        for rf in (self.reuse_factor, *self.reuse_factors):
            if isinstance(rf, bool) or not isinstance(rf, int) or rf < 1:
                raise EehwError(f"hls settings: reuse factors must be positive integers, got {rf!r}")
        if self.strategy not in STRATEGIES:
            raise EehwError(f"hls settings: strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.io_type not in IO_TYPES:
            raise EehwError(f"hls settings: io_type must be one of {', '.join(IO_TYPES)}, got {self.io_type!r}")


def reuse_factor(n_in: int, n_out: int, simd: int, pe: int) -> int:
    """hls4ml's ReuseFactor for an IN x OUT layer the RTL folds to SIMD x PE lanes: hls4ml
    instantiates IN*OUT/RF multipliers and reuses each RF times per output vector (per output
    pixel for a convolution, IN = K*K*C), the MVU has SIMD*PE lanes and takes
    (IN/SIMD)*(OUT/PE) cycles. hls4ml moves an RF it cannot build to the closest valid one;
    the project records the value it used (``HlsBlock.reuse_factors``)."""
    return max(1, (n_in * n_out) // (simd * pe))


def settings_from_plan(golden: GoldenModel, plan, io_type: str = "io_stream") -> dict[str, HlsSettings]:
    """Per block and head of ``golden``, the settings that build the folding of ``plan`` (an
    eehw.hwplan DesignPlan): each weighted layer's reuse factor from its MVU's SIMD x PE. A head
    the plan does not keep gets reuse factor 1."""
    from eehw.hwplan import MvuStage

    mvus = {st.name: st for part in (*plan.blocks, *plan.heads.values()) for st in part.stages
            if isinstance(st, MvuStage)}
    out = {}
    for part in (*golden.blocks, *(golden.heads[k] for k in golden.exits)):
        rfs = tuple(reuse_factor(m.in_n, m.out_n, m.folding.simd, m.folding.pe) if (m := mvus.get(op.name)) else 1
                    for op in part.ops if isinstance(op, (Dense, Conv)))
        out[part.name] = HlsSettings(io_type=io_type, reuse_factors=rfs)
    return out


def strategy_for(rf: int) -> str:
    """Latency (fully parallel) at RF 1, Resource (multipliers shared, weights in memory) above."""
    return "Latency" if rf == 1 else "Resource"


@dataclass
class HlsBlock:
    """One compiled hls4ml project: a backbone block or an exit head."""

    name: str  # the golden IntBlock's name: "blocks.0", "heads.0", ...
    project_dir: Path
    project_name: str  # C identifier hls4ml uses for the top function and files
    backend: str
    part: str
    clock_period_ns: float
    settings: HlsSettings
    in_type: FixedType
    out_type: FixedType
    in_shape: tuple[int, ...]  # per sample, channels-last
    out_shape: tuple[int, ...]  # per sample, channels-last
    key: str  # content hash of the project (cache key)
    library: str  # compiled C-sim library, relative to project_dir
    cached: bool  # reused a compiled project from the cache
    convert_seconds: float
    compile_seconds: float
    reuse_factors: tuple[int, ...] = ()  # what hls4ml built each weighted layer with
    _csim: object = field(default=None, repr=False, compare=False)

    @property
    def kind(self) -> str:
        return "head" if self.name.startswith("heads.") else "block"

    @property
    def index(self) -> int:
        return int(self.name.split(".")[1])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """C-sim on float inputs (real values, channels-last); returns real values, channels-last."""
        if self._csim is None:
            self._csim = _CSim(self.project_dir / self.library, self.project_name)
        n = len(x)
        flat = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(n, -1))
        size_in, size_out = int(np.prod(self.in_shape)), int(np.prod(self.out_shape))
        if flat.shape[1] != size_in:
            raise EehwError(f"hls block {self.name}: input has {flat.shape[1]} values per sample, "
                            f"the project takes {size_in}")
        return self._csim(flat, size_out).reshape(n, *self.out_shape)

    def summary(self) -> dict:
        """What the flow's report keeps of this project."""
        return {"name": self.name, "project": str(self.project_dir), "backend": self.backend, "part": self.part,
                "clock_period_ns": self.clock_period_ns, **asdict(self.settings),
                "input_precision": self.in_type.hls, "output_precision": self.out_type.hls,
                "reuse_factors_built": list(self.reuse_factors),
                "strategies": [strategy_for(rf) for rf in self.settings.reuse_factors] or None,
                "cached": self.cached,
                "convert_seconds": round(self.convert_seconds, 3),
                "compile_seconds": round(self.compile_seconds, 3)}


class _CSim:
    """hls4ml's Python bridge, called directly: ``<project>_double(in[N_IN], out[N_OUT])``."""

    def __init__(self, library: Path, project_name: str):
        lib = ctypes.CDLL(str(library))
        self._fn = getattr(lib, f"{project_name}_double")
        self._fn.restype = None
        self._fn.argtypes = [npc.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")] * 2
        self._lib = lib

    def __call__(self, x: np.ndarray, size_out: int) -> np.ndarray:
        out = np.zeros((len(x), size_out), dtype=np.float64)
        for i in range(len(x)):
            self._fn(x[i], out[i])
        return out


# --------------------------------------------------------------------------- QONNX export

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
        raise EehwError(f"{block.name}: QONNX export failed: {_first_line(exc)}") from None
    supported = _supported_onnx_ops() | REWRITTEN_BY_QONNX
    for node in proto.graph.node:
        if node.op_type not in supported:
            raise EehwError(f"{block.name}: hls4ml cannot convert layer {_layer_of(node.name, block.name)} "
                            f"(ONNX op {node.op_type}); use a layer the golden model supports or replace it")
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
        raise EehwError(f"{block.name}: qonnx clean-up failed: {_first_line(exc)}") from None
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
        raise EehwError(f"{block.name}: QONNX graph is {got_in} -> {got_out}, expected channels-last "
                        f"{want_in} -> {want_out}; the block has a layout qonnx could not make channels-last")


def head_graph(model, head: IntBlock):
    """The cleaned QONNX graph of an exit head, just before hls4ml converts it.

    This is where ``eehw.hls_decision`` appends the confidence decision unit, so that a head and
    its decision unit are one hls4ml project. Without it the head ends at its integer logits.
    """
    return model


# --------------------------------------------------------------------------- hls4ml conversion

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
                layer.update(n_in=length, n_filt=channels, pad_left=pad_left, pad_right=pad_right,
                             n_out=(length + pad_left + pad_right - span) // layer["stride_width"] + 1)
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
        config = hls4ml.utils.config_from_onnx_model(model, granularity="name", backend=backend,
                                                     default_reuse_factor=settings.reuse_factor)
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
            raise EehwError(f"hls settings: {len(settings.reuse_factors)} reuse factors for {len(weighted)} "
                            f"weighted layers ({', '.join(weighted)})")
        for name, rf in zip(weighted, settings.reuse_factors):
            layers.setdefault(name, {}).update(ReuseFactor=rf, Strategy=strategy_for(rf))
    return config


#: ONNX nodes that become hls4ml layers with a ReuseFactor, one per golden Dense / Conv.
WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")


def used_reuse_factors(graph) -> list[int]:
    """The ReuseFactor hls4ml built each weighted layer with (it may move a requested one)."""
    return [int(layer.get_attr("reuse_factor")) for layer in graph.get_layers()
            if layer.class_name in ("Dense", "Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D")]


def _content_key(model, config: dict, project_name: str, backend: str, board: Board, settings: HlsSettings) -> str:
    import hls4ml

    h = hashlib.sha256()
    h.update(model.model.SerializeToString(deterministic=True))
    # The code that converts and compiles (this module, the decision unit's layer and C++ header).
    code = code_hash("eehw.hls", "eehw.hls_decision", shipped("hls_templates") / "nnet_utils")
    h.update(json.dumps({"config": config, "hls4ml": hls4ml.__version__, "recipe": RECIPE, "code": code,
                         "project": project_name, "backend": backend, "part": board.part, "clock": board.clock_period_ns,
                         "settings": asdict(settings)}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def _clock(board: Board):
    period = board.clock_period_ns
    return int(period) if float(period).is_integer() else period


def _convert(model, config: dict, project_dir: Path, project_name: str, backend: str, board: Board,
             settings: HlsSettings, block: IntBlock, log: io.StringIO):
    import hls4ml

    try:
        with contextlib.redirect_stdout(log), _hls4ml_fixes():
            graph = hls4ml.converters.convert_from_onnx_model(
                model, output_dir=str(project_dir), project_name=project_name, backend=backend, hls_config=config,
                part=board.part, clock_period=_clock(board), io_type=settings.io_type,
                # Weights from the headers only: a C-sim library that reads weights/*.txt at run time
                # has their absolute path compiled in (and exits when it moves), so it could not be cached.
                write_weights_txt=False)
    except Exception as exc:  # hls4ml raises bare Exceptions; keep the line that names the problem
        raise EehwError(f"{block.name}: hls4ml cannot convert it: {_first_line(exc)}") from None
    return graph


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


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
        raise EehwError(f"{block.name}: hls4ml input precision is {graph.get_input_variables()[0].type.precision}, "
                        f"expected the Brevitas type {in_type.hls}")
    out_t = FixedType.of_output(block)
    want_out = (out_t.bits, out_t.bits + out_t.exp, out_t.signed)
    got_out = _fixed(graph.get_output_variables()[0].type.precision)
    if got_out != want_out:
        raise EehwError(f"{block.name}: hls4ml output precision is {graph.get_output_variables()[0].type.precision}, "
                        f"the golden model's is {out_t.hls}")
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
                raise EehwError(f"{where}: accum_t {accum.precision if accum else None} cannot hold the accumulator "
                                f"(width {needed[0]}, {needed[0] - needed[1]} fractional bits)")
            if not _represents(fixed, needed):
                # hls4ml folded the following quantiser into the layer's output cast: it must be
                # that quantiser exactly, rounding half to even and saturating.
                follow = block.ops[block.ops.index(op) + 1] if block.ops.index(op) + 1 < len(block.ops) else None
                want = (follow.bits, follow.bits + follow.out_exp, follow.signed) if isinstance(follow, Quant) else None
                if fixed != want or _mode(result, "rounding_mode") != "RND_CONV" or \
                        _mode(result, "saturation_mode") not in ("SAT", "SAT_SYM"):
                    raise EehwError(f"{where}: result_t {result} narrows the accumulator unlike the golden model")
        elif layer.class_name in ("Activation", "ReLU", "Input") or layer.class_name.endswith("Quant"):
            if layer.class_name != "Input":
                if _mode(result, "rounding_mode") != "RND_CONV" or \
                        _mode(result, "saturation_mode") not in ("SAT", "SAT_SYM"):
                    raise EehwError(f"{where} requantises with {result}; the golden model rounds half to even "
                                    f"and saturates (RND_CONV, SAT)")
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


# --------------------------------------------------------------------------- build and cache

def _atomic_copytree(src: Path, dst: Path) -> None:
    """Replace ``dst`` by a copy of ``src`` so that ``dst`` is never half-written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    old = dst.with_name(f".{dst.name}.old{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=True)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


@dataclass
class _Job:
    """One project on its way through convert -> write -> compile -> cache -> design folder."""

    name: str
    block: IntBlock
    in_type: FixedType
    project_dir: Path
    project_name: str
    backend: str
    settings: HlsSettings
    key: str
    cached_dir: Path
    convert_seconds: float
    tmp: Path | None = None
    graph: object = None
    log: io.StringIO = field(default_factory=io.StringIO)
    compile_seconds: float = 0.0

    @property
    def cached(self) -> bool:
        return (self.cached_dir / _META).is_file()

    def fail(self) -> None:
        """Keep hls4ml's output for the user, and nothing half-written."""
        self.cached_dir.parent.mkdir(parents=True, exist_ok=True)
        self.cached_dir.with_suffix(".log").write_text(self.log.getvalue())
        self.discard()

    def discard(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _prepare(name: str, model, block: IntBlock, in_type: FixedType, board: Board, project_dir: Path,
             backend: str, settings: HlsSettings | None) -> _Job:
    """Config and content key; on a cache miss also convert, check and write the project (to a tmp dir)."""
    if backend not in BACKENDS:
        raise EehwError(f"hls backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    settings = settings or HlsSettings()
    project_name = re.sub(r"\W", "_", name)
    start = time.perf_counter()
    config = hls_config(model, in_type, settings, backend)
    key = _content_key(model, config, project_name, backend, board, settings)
    job = _Job(name, block, in_type, Path(project_dir), project_name, backend, settings, key,
               cache_dir() / "hls4ml" / f"{project_name}-{key}", 0.0)
    if not job.cached:
        job.tmp = job.cached_dir.with_name(f".{job.cached_dir.name}.tmp{os.getpid()}")
        shutil.rmtree(job.tmp, ignore_errors=True)
        try:
            job.graph = _convert(model, config, job.tmp, project_name, backend, board, settings, block, job.log)
            check_precisions(job.graph, block, in_type)
            with contextlib.redirect_stdout(job.log):
                job.graph.write()
        except BaseException:
            job.fail()
            raise
    job.convert_seconds = time.perf_counter() - start
    return job


def _compile(job: _Job) -> None:
    """g++ through hls4ml's backend (thread-safe: a subprocess in the project's folder).

    The backend's compile builds the library without loading it: HlsBlock loads the copy in the
    design's folder, the same way for fresh and cached projects.
    """
    start = time.perf_counter()
    try:
        library = Path(job.graph.config.backend.compile(job.graph))
    except Exception as exc:
        raise EehwError(f"{job.name}: hls4ml C-sim compile (g++) failed: {_first_line(exc)}; "
                        f"see {job.cached_dir.with_suffix('.log')}") from None
    job.compile_seconds = time.perf_counter() - start
    meta = {"name": job.name, "project_name": job.project_name, "key": job.key, "backend": job.backend,
            "library": str(library.relative_to(job.tmp)), "convert_seconds": job.convert_seconds,
            "reuse_factors": used_reuse_factors(job.graph),
            "compile_seconds": job.compile_seconds}
    (job.tmp / "eehw_convert.log").write_text(job.log.getvalue())
    (job.tmp / _META).write_text(json.dumps(meta, indent=2))
    try:
        job.tmp.rename(job.cached_dir)
    except OSError:
        if not job.cached:
            raise
        shutil.rmtree(job.tmp)  # another process finished the same project first


def _finish(job: _Job, board: Board, was_cached: bool) -> HlsBlock:
    meta = json.loads((job.cached_dir / _META).read_text())
    _atomic_copytree(job.cached_dir, job.project_dir)
    return HlsBlock(name=job.name, project_dir=job.project_dir, project_name=job.project_name, backend=job.backend,
                    part=board.part, clock_period_ns=board.clock_period_ns, settings=job.settings,
                    in_type=job.in_type, out_type=FixedType.of_output(job.block),
                    in_shape=channels_last_shape(job.block.in_shape),
                    out_shape=channels_last_shape(job.block.out_shape), key=job.key, library=meta["library"],
                    cached=was_cached, convert_seconds=job.convert_seconds, compile_seconds=job.compile_seconds,
                    reuse_factors=tuple(meta.get("reuse_factors", ())))


def _run_jobs(jobs: list[_Job], board: Board, bar=None, task=None) -> list[HlsBlock]:
    """Compile the cache misses in parallel (g++ runs in subprocesses), then publish every project."""
    was_cached = [job.cached for job in jobs]
    todo = [job for job, hit in zip(jobs, was_cached) if not hit]
    workers = max(1, min(len(todo), os.cpu_count() or 1))
    errors: list[BaseException] = []
    if todo:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_compile, job): job for job in todo}
            for future in as_completed(futures):
                if future.exception() is not None:
                    futures[future].fail()
                    errors.append(future.exception())
                if bar is not None:
                    bar.update(task, advance=1)
    if errors:
        raise errors[0]
    if bar is not None and len(jobs) > len(todo):
        bar.update(task, advance=len(jobs) - len(todo))
    return [_finish(job, board, hit) for job, hit in zip(jobs, was_cached)]


def build_block(name: str, model, block: IntBlock, in_type: FixedType, board: Board, project_dir: Path,
                backend: str = "Vitis", settings: HlsSettings | None = None) -> HlsBlock:
    """Convert and compile one QONNX block into ``project_dir``, reusing a cached compiled project."""
    return _run_jobs([_prepare(name, model, block, in_type, board, project_dir, backend, settings)], board)[0]


def _parts(trained_model: nn.Module, golden: GoldenModel) -> list[tuple[nn.Module, IntBlock, FixedType]]:
    """(Brevitas module, golden block, input type) in execution order: block k, then its head."""
    parts = []
    in_type = FixedType.of_quant(golden.blocks[0].ops[0])  # the quantised input the hardware receives
    for k, block in enumerate(golden.blocks):
        parts.append((trained_model.blocks[k], block, in_type))
        in_type = FixedType.of_output(block)
        if k in golden.heads:
            parts.append((trained_model.heads[str(k)], golden.heads[k], in_type))
    return parts


def build_hls_projects(trained, golden: GoldenModel, board: Board, out_dir: str | Path, backend: str = "Vitis",
                       settings: Mapping[str, HlsSettings] | None = None) -> list[HlsBlock]:
    """One compiled hls4ml project per block and head under ``<out_dir>/hls/<block name>/``.

    ``trained`` is a TrainedModel (or the Brevitas MultiExitNet itself); ``settings`` maps block
    names ("blocks.0", "heads.1", ...) to HlsSettings, missing names get the defaults.
    """
    model = getattr(trained, "model", trained)
    settings = dict(settings or {})
    parts = _parts(model, golden)
    unknown = set(settings) - {block.name for _, block, _ in parts}
    if unknown:
        raise EehwError(f"hls settings name unknown blocks {', '.join(sorted(unknown))}; "
                        f"blocks are {', '.join(b.name for _, b, _ in parts)}")
    root = Path(out_dir) / "hls"
    jobs = []
    with progress() as bar:
        task = bar.add_task("hls4ml convert", total=len(parts))
        try:
            for module, block, in_type in parts:
                bar.update(task, description=f"hls4ml convert {block.name}")
                start = time.perf_counter()
                qonnx = export_block(module, block)
                if block.name.startswith("heads."):
                    qonnx = head_graph(qonnx, block)
                export_seconds = time.perf_counter() - start
                job = _prepare(block.name, qonnx, block, in_type, board, root / block.name, backend,
                               settings.get(block.name))
                job.convert_seconds += export_seconds
                jobs.append(job)
                bar.update(task, advance=1, description="hls4ml convert")
        except BaseException:
            for job in jobs:  # written but never compiled: not worth keeping
                job.discard()
            raise
        task = bar.add_task("hls4ml compile", total=len(jobs))
        return _run_jobs(jobs, board, bar, task)


# --------------------------------------------------------------------------- chain C-sim

def _as_int(values: np.ndarray, exp: int, name: str) -> np.ndarray:
    scaled = values * 2.0 ** -exp
    ints = np.rint(scaled)
    if not np.array_equal(ints, scaled):
        bad = int(np.sum(ints != scaled))
        raise EehwError(f"{name}: C-sim output has {bad} values that are not multiples of 2^{exp}; "
                        f"the project's output type does not match the golden model")
    return ints.astype(np.int64)


def chain_outputs(projects: list[HlsBlock], golden: GoldenModel, x_float: np.ndarray) -> dict[str, np.ndarray]:
    """Every project's integer output (channels-last) with each block fed the previous block's C-sim
    output and each head fed its block's; block 0 gets the golden quantised input."""
    by_name = {p.name: p for p in projects}
    missing = [b.name for b in list(golden.blocks) + [golden.heads[k] for k in golden.exits] if b.name not in by_name]
    if missing:
        raise EehwError(f"hls chain: no project for {', '.join(missing)}; build every block and head first")
    q0 = golden.blocks[0].ops[0]
    h = to_channels_last(golden.quantize_input(x_float)).astype(np.float64) * 2.0 ** q0.out_exp
    outputs = {}
    for k, block in enumerate(golden.blocks):
        h = by_name[block.name].predict(h)
        outputs[block.name] = _as_int(h, block.out_exp, block.name)
        if k in golden.heads:
            head = golden.heads[k]
            outputs[head.name] = _as_int(by_name[head.name].predict(h), head.out_exp, head.name)
    return outputs


def run_chain(projects: list[HlsBlock], golden: GoldenModel, x_float: np.ndarray) -> list[np.ndarray]:
    """Per-exit integer logits of the hls4ml C-sim chain, shallowest exit first."""
    outputs = chain_outputs(projects, golden, x_float)
    return [outputs[golden.heads[k].name].reshape(len(x_float), -1) for k in golden.exits]


def chain_check(projects: list[HlsBlock], golden: GoldenModel, x_float: np.ndarray) -> tuple[dict[str, int], dict | None]:
    """Per block and head, the number of samples whose chained C-sim output differs from the
    golden model's (0 everywhere or the HLS path is wrong), and the first such (block, sample).

    The result is cached by content: every project's key (its generated sources and settings),
    the samples, and the code of the C-sim bridge and the golden model. A warm flow of fmnist_cnn
    would otherwise run 10k samples through every C-sim library again (most of its HLS step)."""
    h = hashlib.sha256(code_hash("eehw.hls", "eehw.golden", "eehw.export").encode())
    for p in sorted(projects, key=lambda p: p.name):
        h.update(f"|{p.name}:{p.key}".encode())
    h.update(np.ascontiguousarray(x_float).tobytes())
    path = cache_dir() / "hls_chain" / f"{h.hexdigest()[:20]}.json"
    hit = load_json(path, "HLS chain check", "running it again", ("counts", "first"))
    if hit is not None:
        return {k: int(v) for k, v in hit["counts"].items()}, hit["first"]
    counts, first = _chain_check(projects, golden, x_float)
    atomic_write_text(path, json.dumps({"counts": counts, "first": first}))
    return counts, first


def _chain_check(projects: list[HlsBlock], golden: GoldenModel, x_float: np.ndarray) -> tuple[dict[str, int], dict | None]:
    outputs = chain_outputs(projects, golden, x_float)
    n = len(x_float)
    counts, first, h = {}, None, x_float

    def compare(name: str, want: np.ndarray) -> None:
        nonlocal first
        bad = np.any(outputs[name].reshape(n, -1) != want.reshape(n, -1), 1)
        counts[name] = int(bad.sum())
        if bad.any() and first is None:
            first = {"block": name, "sample": int(np.argmax(bad))}

    for k, block in enumerate(golden.blocks):
        h = block(h)
        compare(block.name, to_channels_last(h))
        if k in golden.heads:
            compare(golden.heads[k].name, golden.heads[k](h))
    return counts, first

