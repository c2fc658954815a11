"""The confidence decision unit on the HLS path and its C++ testbench.

The unit itself is one header, ``hls_templates/nnet_utils/nnet_eehw_decision.h``, bit-exact with
``eehw.policy.policies`` and ``rtl_sim/hdl/decision_unit.v``; ``DecisionUnit`` is one instance of
it (format, policy, shift) and the testbench here runs it on raw integer logits with g++. It
reaches hls4ml as a layer of its own through ``eehw.hw.hls.decision_layer``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from eehw.errors import EehwError
from eehw.hw.plan import DecisionFormat
from eehw.hw.tools.run import run_tool
from eehw.paths import cache_dir, shipped
from eehw.policy.policies import HARDWARE_POLICY_CODES, policy_name

HEADER = "nnet_eehw_decision.h"
MAX_LOGIT_WIDTH = 62  # raw logits travel as int64 between Python and the testbench
MAX_THR_WIDTH = 63
COMPILE_TIMEOUT_S = 600
RUN_TIMEOUT_S = 600  # a million vectors take about a second


def templates_dir() -> Path:
    return shipped("hls_templates")


def header_path() -> Path:
    return templates_dir() / "nnet_utils" / HEADER


def jinja_env() -> jinja2.Environment:
    """The templates of hls_templates/, rendered strictly: a missing value fails here, not in g++."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class DecisionUnit:
    """One decision unit: the design-wide widths (``DecisionFormat``) and this exit's shift."""

    fmt: DecisionFormat
    shift: int = 0

    def __post_init__(self) -> None:
        name = policy_name(self.fmt.policy)
        if name not in HARDWARE_POLICY_CODES:
            raise EehwError(
                f"policy '{name.value}' has no hardware decision unit; use one of "
                f"{', '.join(p.value for p in HARDWARE_POLICY_CODES)}"
            )
        if self.fmt.num_classes < 2:
            raise EehwError(f"a decision unit needs at least 2 classes, got {self.fmt.num_classes}")
        if not 2 <= self.fmt.logit_w <= MAX_LOGIT_WIDTH:
            raise EehwError(f"logit width {self.fmt.logit_w} is outside 2..{MAX_LOGIT_WIDTH} bits")
        if self.fmt.thr_w > MAX_THR_WIDTH:
            raise EehwError(
                f"the threshold register would need {self.fmt.thr_w} bits (max {MAX_THR_WIDTH}); lower frac_bits"
            )
        if self.shift < 0:
            raise EehwError(f"decision shift must be >= 0, got {self.shift}")

    @property
    def policy_code(self) -> int:
        return HARDWARE_POLICY_CODES[policy_name(self.fmt.policy)]

    @property
    def result_width(self) -> int:
        """Width of every element of the hls4ml output {exit, class, confidence}."""
        return max(self.fmt.conf_w, self.fmt.class_w, 1)

    def config_fields(self) -> dict[str, int]:
        """The members of the C++ config struct (nnet::eehw_decision_config)."""
        return {
            "n_classes": self.fmt.num_classes,
            "logit_width": self.fmt.logit_w,
            "policy": self.policy_code,
            "shift": self.shift,
            "frac_bits": self.fmt.frac_bits,
            "levels": (self.fmt.num_classes - 1).bit_length(),
            "class_width": self.fmt.class_w,
            "conf_width": self.fmt.conf_w,
            "thr_width": self.fmt.thr_w,
        }

    def config_cpp(self, struct_name: str) -> str:
        template = jinja_env().get_template("tb/decision_config.h.j2")
        return template.render(name=struct_name, fields=self.config_fields())


# ---------------------------------------------------------------------------------------------
# C++ testbench: g++ against hls4ml's bundled ap_types, vectors in and results out as int64.


def ap_types_dir() -> Path:
    import hls4ml

    path = Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"
    if not (path / "ap_int.h").is_file():
        raise EehwError(f"hls4ml's bundled ap_types not found at {path}; reinstall hls4ml==1.3.0")
    return path


@dataclass(frozen=True)
class CsimCase:
    """One configuration compiled into the testbench; ``fixed_int_bits`` set: logits are
    ap_fixed<W, I> instead of ap_int<W> (same raw bits, same decision)."""

    unit: DecisionUnit
    fixed_int_bits: int | None = None

    @property
    def input_type(self) -> str:
        w = self.unit.fmt.logit_w
        return f"ap_int<{w}>" if self.fixed_int_bits is None else f"ap_fixed<{w}, {self.fixed_int_bits}>"


def build_testbench(cases: list[CsimCase]) -> Path:
    """Compile the decision testbench for ``cases``; the binary is cached by content hash."""
    source = (
        jinja_env()
        .get_template("tb/decision_tb.cpp.j2")
        .render(
            cases=[
                {
                    "config": c.unit.config_cpp(f"config{i}"),
                    "input_t": c.input_type,
                    "ctrl_t": f"ap_uint<{c.unit.fmt.thr_w + 1}>",
                    "res_t": f"ap_uint<{c.unit.result_width}>",
                }
                for i, c in enumerate(cases)
            ]
        )
    )
    header = header_path().read_bytes()
    import hls4ml

    key = hashlib.sha256(source.encode() + header + f"{ap_types_dir()} {hls4ml.__version__}".encode()).hexdigest()[:16]
    folder = cache_dir() / "hls_decision_tb" / key
    binary = folder / "decision_tb"
    if binary.is_file():
        return binary
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "decision_tb.cpp").write_text(source)
    (folder / HEADER).write_bytes(header)
    tmp = folder / f"decision_tb.{os.getpid()}.tmp"
    cmd = [
        "g++",
        "-O2",
        "-std=c++14",
        f"-I{ap_types_dir()}",
        f"-I{folder}",
        "-o",
        str(tmp),
        str(folder / "decision_tb.cpp"),
    ]
    run_tool(cmd, what=f"g++ on the decision testbench ({folder / 'decision_tb.cpp'})", timeout=COMPILE_TIMEOUT_S)
    tmp.replace(binary)
    return binary


def run_testbench(
    binary: Path, case_index: int, case: CsimCase, logits: np.ndarray, thresholds: np.ndarray, enables: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """C-sim of ``eehw_decision`` on raw integer logits (N, C): (exit flag, class, confidence)."""
    fmt = case.unit.fmt
    logits = np.asarray(logits, dtype=np.int64)
    if logits.ndim != 2 or logits.shape[1] != fmt.num_classes:
        raise EehwError(f"logits must have shape (samples, {fmt.num_classes}), got {logits.shape}")
    lo, hi = -(1 << (fmt.logit_w - 1)), (1 << (fmt.logit_w - 1)) - 1
    if logits.size and (logits.min() < lo or logits.max() > hi):
        raise EehwError(f"logits outside the {fmt.logit_w}-bit signed range [{lo}, {hi}]")
    n = logits.shape[0]
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.int64), (n,))
    if n and (thresholds.min() < 0 or thresholds.max() >= (1 << fmt.thr_w)):
        raise EehwError(f"thresholds must fit the {fmt.thr_w}-bit unsigned register")
    enables = np.broadcast_to(np.asarray(enables, dtype=np.int64), (n,))
    records = np.concatenate([logits, thresholds[:, None], enables[:, None]], axis=1)
    folder = binary.parent
    stem = folder / f"run.{os.getpid()}.{case_index}"
    vectors, results = stem.with_suffix(".in"), stem.with_suffix(".out")
    np.ascontiguousarray(records).tofile(vectors)
    try:
        run_tool(
            [str(binary), str(case_index), str(vectors), str(results), str(n)],
            what="decision testbench",
            timeout=RUN_TIMEOUT_S,
        )
        out = np.fromfile(results, dtype=np.int64).reshape(n, 3)
    finally:
        vectors.unlink(missing_ok=True)
        results.unlink(missing_ok=True)
    return out[:, 0], out[:, 1], out[:, 2]
