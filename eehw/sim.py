"""Cycle-accurate simulation of a generated design: cocotb on Verilator.

The Verilator build is cached by a hash of every source file and parameter, so re-running a
design (or another run over the same design) skips the C++ compile. The harness
(rtl_sim/harness/ee_top_tb.py) records what came out and when; this module turns that into
per-sample exits, classes and latencies, and the caller compares them with the golden model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eehw.errors import EehwError
from eehw.paths import cache_dir, shipped
from eehw.rtl import RtlDesign
from eehw.verilator import verilator_env


@dataclass(frozen=True)
class SimResult:
    """Per input sample (in input order): exit index, class, confidence and cycles."""

    exit_index: np.ndarray
    prediction: np.ndarray
    confidence: np.ndarray
    latency: np.ndarray  # output handshake cycle - input handshake cycle
    in_cycle: np.ndarray
    out_cycle: np.ndarray
    cycles: int  # simulated cycles from reset release to the last result
    wall_seconds: float
    duplicates: int
    missing: int
    error_flag: bool

    @property
    def samples(self) -> int:
        return len(self.exit_index)

    def throughput(self) -> float:
        """Samples per cycle between the first input and the last output."""
        span = int(self.out_cycle.max() - self.in_cycle.min()) + 1
        return self.samples / span


def _build_hash(rtl: RtlDesign) -> str:
    h = hashlib.sha256()
    for src in rtl.sources:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    for mem in sorted(rtl.out_dir.glob("*.mem")):
        h.update(mem.name.encode())
        h.update(mem.read_bytes())
    return h.hexdigest()[:16]


def build(rtl: RtlDesign):
    """Compile the design with Verilator once per content hash; return the build folder."""
    from cocotb_tools.runner import get_runner

    env = verilator_env()
    os.environ.update(env)
    build_dir = cache_dir() / "verilator" / f"{rtl.top}-{_build_hash(rtl)}"
    runner = get_runner("verilator")
    stamp = build_dir / ".built"
    if not stamp.exists():
        tmp = build_dir.with_name(build_dir.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        log = tmp / "build.log"
        try:
            runner.build(sources=[str(s) for s in rtl.sources], hdl_toplevel=rtl.top, build_dir=str(tmp),
                         always=True, build_args=["-O2"], log_file=str(log))
        except Exception as exc:
            lines = log.read_text().strip().splitlines() if log.exists() else []
            reason = next((line for line in lines if "%Error" in line), lines[-1] if lines else str(exc))
            raise EehwError(f"Verilator build of {rtl.top} failed: {reason.strip()} (log: {log})") from None
        shutil.rmtree(build_dir, ignore_errors=True)
        tmp.rename(build_dir)
        stamp.touch()
    return build_dir


def simulate(rtl: RtlDesign, x_int: np.ndarray, thresholds: list[int | None], *, repeat: int = 1,
             gap_p: float = 0.0, stall_p: float = 0.0, one_at_a_time: bool = False, seed: int = 0) -> SimResult:
    """Run samples through the design; ``thresholds`` has one register value per non-final
    exit of the design (None disables that exit)."""
    from cocotb_tools.runner import get_runner

    fmt = rtl.decision
    n_exits = len(rtl.plan.exits)
    if len(thresholds) != n_exits - 1:
        raise EehwError(f"{rtl.top}: {len(thresholds)} thresholds for {n_exits - 1} early exits")
    threshold_word, enable_word = 0, 0
    for k, t in enumerate(thresholds):
        if t is None:
            continue
        if not 0 <= int(t) < (1 << fmt.thr_w):
            raise EehwError(f"threshold {t} of exit {k} does not fit the {fmt.thr_w}-bit register")
        threshold_word |= int(t) << (k * fmt.thr_w)
        enable_word |= 1 << k
    build_dir = build(rtl)
    block0 = rtl.plan.blocks[0]
    with tempfile.TemporaryDirectory(prefix="eehw-sim-") as tmp:
        tmp = Path(tmp)
        # Feature maps enter the hardware channels-last (position-major), the layout of every beat.
        x_hw = np.asarray(x_int, dtype=np.int64)
        if x_hw.ndim > 2:
            x_hw = np.moveaxis(x_hw, 1, -1)
        np.save(tmp / "inputs.npy", x_hw.reshape(len(x_hw), -1))
        cfg = {"inputs": str(tmp / "inputs.npy"), "in_width": block0.in_w, "tag_w": rtl.tag_w,
               "threshold_word": threshold_word, "enable_word": enable_word, "early_exits": n_exits - 1, "repeat": repeat,
               "gap_p": gap_p, "stall_p": stall_p, "one_at_a_time": one_at_a_time, "seed": seed,
               "output": str(tmp / "out.npz")}
        (tmp / "tb.json").write_text(json.dumps(cfg))
        start = time.perf_counter()
        runner = get_runner("verilator")
        runner.test(hdl_toplevel=rtl.top, hdl_toplevel_lang="verilog", test_module="ee_top_tb",
                              test_dir=str(shipped("rtl_sim") / "harness"), build_dir=str(build_dir),
                              extra_env={"EEHW_TB_CONFIG": str(tmp / "tb.json")},
                              results_xml=str(tmp / "results.xml"), log_file=str(tmp / "sim.log"))
        wall = time.perf_counter() - start
        out = tmp / "out.npz"
        if not out.exists():
            log = (tmp / "sim.log").read_text() if (tmp / "sim.log").exists() else ""
            reason = next((line for line in log.splitlines() if "Error" in line or "timeout" in line), "no output")
            raise EehwError(f"simulation of {rtl.top} failed: {reason.strip()}")
        raw = np.load(out)
        return _decode(rtl, raw, len(x_int) * repeat, wall)


def _decode(rtl: RtlDesign, raw, total: int, wall: float) -> SimResult:
    fmt = rtl.decision
    exit_w = max(1, (len(rtl.plan.exits) - 1).bit_length())
    data = [int(d) for d in raw["data"]]
    tags = raw["tag"]
    tag_mask = (1 << rtl.tag_w) - 1
    # Map each result back to its input: tags count up modulo 2^TAG_W and every path is in
    # order, so the n-th result carrying tag t belongs to the earliest unclaimed input with tag t.
    pending: dict[int, list[int]] = {}
    for i in range(total):
        pending.setdefault(i & tag_mask, []).append(i)
    exit_index = np.full(total, -1, dtype=np.int64)
    prediction = np.full(total, -1, dtype=np.int64)
    confidence = np.full(total, -1, dtype=np.int64)
    out_cycle = np.full(total, -1, dtype=np.int64)
    duplicates = 0
    for word, tag, cyc in zip(data, tags, raw["out_cycle"]):
        queue = pending.get(int(tag))
        if not queue:
            duplicates += 1
            continue
        i = queue.pop(0)
        exit_index[i] = word & ((1 << exit_w) - 1)
        prediction[i] = (word >> exit_w) & ((1 << fmt.class_w) - 1)
        confidence[i] = word >> (exit_w + fmt.class_w)
        out_cycle[i] = cyc
    missing = int((exit_index < 0).sum())
    in_cycle = raw["in_cycle"]
    return SimResult(exit_index, prediction, confidence, out_cycle - in_cycle, in_cycle, out_cycle,
                     int(raw["cycles"]), wall, duplicates, missing, bool(raw["error"]))
