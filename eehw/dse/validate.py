"""Validation: a chosen design generated, simulated whole and synthesised as `eehw synth` measures it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from eehw.policy.policies import PolicyParams

# ---------------------------------------------------------------------------------------------
# Validation: generate, simulate whole, synthesise


def validate_job(
    golden,
    name: str,
    exits: list[int],
    params: PolicyParams,
    thresholds: list,
    folding: dict,
    max_simd: int,
    max_pe: int,
    x_test: np.ndarray,
    board,
) -> dict:
    """Generate the design and measure it as `eehw synth` does (eehw.hw.measure: every test sample
    simulated whole and checked against the golden model, the flow's enforcement, Yosys per
    block and for the top), in a temporary folder of the worker's: the returned dict is the
    ``Measurement``'s JSON plus the generated files (``files``, name -> bytes) for the client to
    write (``write_design_files``), so a Dask worker on another machine needs no folder shared
    with the client."""
    from eehw.hw.measure import enforce, resources, run_design
    from eehw.hw.plan import plan_design
    from eehw.hw.rtl.design import generate
    from eehw.hw.stages import Folding

    plan = plan_design(golden, name, list(exits[:-1]), {k: Folding(*v) for k, v in folding.items()}, max_simd, max_pe)
    with _design_folder(name) as tmp:
        rtl = generate(plan, params, Path(tmp), golden.exits)
        m = run_design(golden, rtl, params, x_test, list(thresholds), workers=1)  # the pool runs jobs in parallel
        enforce(name, m)  # a validated design that is not bit-exact or breaks its bound stops the search
        start = time.perf_counter()
        m = m.with_resources(resources(rtl, board, workers=1), time.perf_counter() - start)
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
        workdir = str(Path(tmp).resolve())
    return {**m.to_json(), "files": files, "worker_dir": workdir}


@contextmanager
def _design_folder(name: str) -> Iterator[Path]:
    """An empty folder for one design, removed afterwards, at the same path every run: the
    generated Verilog names its weight memories by absolute path, and that text is part of
    every Verilator and Yosys cache key, so a random temporary folder made a warm search
    simulate and synthesise every design again. Validations of one name take turns."""
    from eehw.paths import cache_dir

    folder = cache_dir() / "validate" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def write_design_files(measured: dict, out_dir: Path) -> None:
    """Write a validated design's files (``validate_job``'s ``files``) into ``out_dir`` and
    record it as the design's ``rtl_dir``. The Verilog names its weight memories, and the
    ``.f`` file list its generated sources, by the worker's absolute path; those paths are
    rewritten to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    worker = measured.pop("worker_dir").encode()
    for name, data in measured.pop("files").items():
        if name.endswith((".v", ".f")):
            data = data.replace(worker, str(out_dir.resolve()).encode())
        (out_dir / name).write_bytes(data)
    measured["rtl_dir"] = str(out_dir)


def _err(pred: float, meas: float) -> float | None:
    return None if not meas else (pred - meas) / meas


def compare_predicted(design: dict, measured: dict) -> dict:
    p = design["predicted"]
    rows = {
        "mean_latency": (p["mean_latency"], measured["latency_cycles"]["mean"]),
        "worst_latency": (p["worst_latency"], measured["worst_case_latency_cycles"]),
        "throughput": (p["throughput"], measured["throughput_samples_per_cycle"]),
        "LUT": (p["LUT"], measured["resources"]["LUT"]),
        "FF": (p["FF"], measured["resources"]["FF"]),
    }
    return {k: {"predicted": a, "measured": b, "error": _err(a, b)} for k, (a, b) in rows.items()}


def design_id(d: dict) -> str:
    text = json.dumps({k: d[k] for k in ("exits", "heads", "policy", "folding")}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]
