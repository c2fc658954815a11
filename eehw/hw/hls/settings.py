"""hls4ml settings per weighted layer (reuse factor and strategy from the RTL folding), fixed-point types and the built block."""

from __future__ import annotations

import ctypes
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.ctypeslib as npc

from eehw.errors import EehwError
from eehw.model.golden import Conv, Dense, GoldenModel, IntBlock, Quant

BACKENDS = ("Vitis", "Vivado")
STRATEGIES = ("Latency", "Resource")
IO_TYPES = ("io_parallel", "io_stream")

#: Bump when the export/conversion recipe changes, so old cached projects are not reused.
RECIPE = 1

BLOCK_META = "eehw_block.json"


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
    eehw.hw.plan DesignPlan): each weighted layer's reuse factor from its MVU's SIMD x PE. A head
    the plan does not keep gets reuse factor 1."""
    from eehw.hw.stages import MvuStage

    mvus = {
        st.name: st for part in (*plan.blocks, *plan.heads.values()) for st in part.stages if isinstance(st, MvuStage)
    }
    out = {}
    for part in (*golden.blocks, *(golden.heads[k] for k in golden.exits)):
        rfs = tuple(
            reuse_factor(m.in_n, m.out_n, m.folding.simd, m.folding.pe) if (m := mvus.get(op.name)) else 1
            for op in part.ops
            if isinstance(op, (Dense, Conv))
        )
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
            raise EehwError(
                f"hls block {self.name}: input has {flat.shape[1]} values per sample, the project takes {size_in}"
            )
        return self._csim(flat, size_out).reshape(n, *self.out_shape)

    def summary(self) -> dict:
        """What the flow's report keeps of this project."""
        return {
            "name": self.name,
            "project": str(self.project_dir),
            "backend": self.backend,
            "part": self.part,
            "clock_period_ns": self.clock_period_ns,
            **asdict(self.settings),
            "input_precision": self.in_type.hls,
            "output_precision": self.out_type.hls,
            "reuse_factors_built": list(self.reuse_factors),
            "strategies": [strategy_for(rf) for rf in self.settings.reuse_factors] or None,
            "cached": self.cached,
            "convert_seconds": round(self.convert_seconds, 3),
            "compile_seconds": round(self.compile_seconds, 3),
        }


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
