"""Cycle-accurate simulation of a generated design: cocotb on Verilator.

The design's top runs inside a generated Verilog wrapper (rtl_sim/harness/ee_tb.v.j2) that
holds the input samples, the seeded random input gaps and output stalls, the cycle counter and
the handshake logs, so the simulation runs at Verilator's speed and cocotb (ee_tb.py) wakes
once per run. The per-cycle Python testbench (ee_top_tb.py) is kept as ``harness="cocotb"``: an
independent implementation of the same stimulus, the reference the wrapper is checked and
benchmarked against. Verilator builds are cached by a hash of every source, memory file and
build option, so re-running a design (or another run over the same design) skips the compile.
This module turns the logs into per-sample exits, classes and latencies; the caller compares
them with the golden model.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eehw.cache import load_arrays, save_arrays
from eehw.errors import EehwError
from eehw.hw.bits import TagQueue
from eehw.hw.rtl.design import RtlDesign
from eehw.hw.rtl.verilate import WRAPPER_TOP, build, build_wrapper, run_harness, wrapper_capacity
from eehw.paths import cache_dir

HARNESSES = ("wrapper", "cocotb")


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
    sim_seconds: float = float("nan")  # wall time from reset release to the last result (no start-up)

    @property
    def samples(self) -> int:
        return len(self.exit_index)

    def throughput(self) -> float:
        """Samples per cycle between the first input and the last output."""
        span = int(self.out_cycle.max() - self.in_cycle.min()) + 1
        return self.samples / span


def _register_words(rtl: RtlDesign, thresholds: list[int | None]) -> tuple[int, int]:
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
    return threshold_word, enable_word


def _hw_rows(x_int: np.ndarray, beats: int) -> np.ndarray:
    """Samples as rows of beat elements, ``beats`` rows per sample: a feature map enters the
    hardware one pixel (all channels) per beat, row-major; a vector as one beat."""
    x_hw = np.asarray(x_int, dtype=np.int64)
    if x_hw.ndim > 2:
        x_hw = np.moveaxis(x_hw, 1, -1)
    return x_hw.reshape(len(x_hw) * beats, -1)


def _probability(name: str, p: float) -> int:
    """A probability as the wrapper's 17-bit threshold on a 16-bit random number."""
    if not 0.0 <= p < 1.0:
        raise EehwError(f"{name}={p} is not a probability below 1 (1 would never hand a sample over)")
    return round(p * 65536)


def _memory_file(path: Path, rows: np.ndarray, width: int) -> None:
    """One hex word per beat for $readmemh, element i at bits [i*width +: width]."""
    digits = -(-rows.shape[1] * width // 4)
    mask = (1 << width) - 1
    with path.open("w") as f:
        for row in rows.tolist():
            word = 0
            for i, value in enumerate(row):
                word |= (value & mask) << (i * width)
            f.write(f"{word:0{digits}x}\n")


def simulate(
    rtl: RtlDesign,
    x_int: np.ndarray,
    thresholds: list[int | None],
    *,
    repeat: int = 1,
    gap_p: float = 0.0,
    stall_p: float = 0.0,
    one_at_a_time: bool = False,
    seed: int = 0,
    harness: str = "wrapper",
    inject: str = "",
    quick: bool = False,
    reuse: bool = True,
) -> SimResult:
    """Run samples through the design; ``thresholds`` has one register value per non-final
    exit of the design (None disables that exit). The test set goes in ``repeat`` times; each
    cycle the input is held back with probability ``gap_p`` and the output stalled with
    probability ``stall_p``. ``harness="cocotb"`` runs the per-cycle Python testbench instead
    (much slower; its random gaps and stalls are a different sequence). ``inject`` goes into the
    wrapper (see wrapper_source). ``quick`` builds the model unoptimised: for a few hundred
    samples of a small design, where the build costs more than the run. ``reuse=False`` runs the
    simulator even when the same build has run the same stimulus (a benchmark timing it)."""
    if harness not in HARNESSES:
        raise EehwError(f"unknown simulation harness '{harness}'; use one of {', '.join(HARNESSES)}")
    threshold_word, enable_word = _register_words(rtl, thresholds)
    beats = rtl.plan.blocks[0].in_beats
    rows = _hw_rows(x_int, beats)
    samples = len(rows) // beats
    if samples == 0 or repeat < 1:
        raise EehwError(f"{rtl.top}: nothing to simulate ({samples} samples x repeat {repeat})")
    total = samples * repeat
    cfg = {
        "threshold_word": threshold_word,
        "enable_word": enable_word,
        "early_exits": len(rtl.plan.exits) - 1,
        "seed": int(seed),
    }
    # No handshake for this many cycles means a lost sample or a deadlock, not slow stimulus.
    idle_limit = 1000 + 20 * rtl.latency_bound / ((1 - gap_p) * (1 - stall_p))
    if harness == "cocotb":
        if inject:
            raise EehwError("fault injection needs the wrapper harness")
        return _simulate_cocotb(
            rtl,
            rows,
            total,
            {
                **cfg,
                "repeat": repeat,
                "gap_p": gap_p,
                "stall_p": stall_p,
                "one_at_a_time": one_at_a_time,
                "beats": beats,
                "idle_limit": int(idle_limit),
            },
        )
    if samples > wrapper_capacity(rtl):
        raise EehwError(
            f"{samples} distinct samples exceed the simulation wrapper's {wrapper_capacity(rtl)}; "
            f"simulate them in chunks"
        )
    cfg.update(
        n_words=samples,
        total=total,
        gap_thr=_probability("gap_p", gap_p),
        stall_thr=_probability("stall_p", stall_p),
        one_at_a_time=int(one_at_a_time),
        idle_limit=min(int(idle_limit), (1 << 32) - 1),
        max_cycles=(1 << 63) - 1,
    )
    build_dir = build_wrapper(rtl, inject, quick)
    # The same build on the same stimulus gives the same cycles: a warm flow reads the result.
    key = hashlib.sha256(json.dumps([build_dir.name, cfg], sort_keys=True).encode() + rows.tobytes()).hexdigest()[:24]
    cached = cache_dir() / "sim" / f"{rtl.top}-{key}.npz"
    raw = _cached_run(cached) if reuse else None
    if raw is not None:
        return _decode(rtl, raw, total, 0.0)
    with tempfile.TemporaryDirectory(prefix="eehw-sim-") as tmp:
        tmp = Path(tmp)
        _memory_file(tmp / "inputs.hex", rows, rtl.plan.blocks[0].in_w)
        cfg["summary"] = str(tmp / "summary.json")
        wall = run_harness(
            rtl.top,
            WRAPPER_TOP,
            "ee_tb",
            build_dir,
            tmp,
            cfg,
            tmp / "summary.json",
            plusargs=[
                f"+eehw_inputs={tmp / 'inputs.hex'}",
                f"+eehw_in_log={tmp / 'in.log'}",
                f"+eehw_out_log={tmp / 'out.log'}",
            ],
        )
        summary = json.loads((tmp / "summary.json").read_text())
        if summary["timeout"]:
            raise EehwError(
                f"simulation of {rtl.top} stalled: {summary['received']} of {total} results after "
                f"{summary['cycles']} cycles (no handshake for {cfg['idle_limit']} cycles)"
            )
        in_cycle = np.array([int(line, 16) for line in (tmp / "in.log").read_text().split()], dtype=np.int64)
        out = [line.split() for line in (tmp / "out.log").read_text().splitlines()]
    raw = {
        "in_cycle": in_cycle,
        "out_cycle": np.array([int(o[0], 16) for o in out], dtype=np.int64),
        "tag": [int(o[1], 16) for o in out],
        "data": [int(o[2], 16) for o in out],
        "cycles": summary["cycles"],
        "error": summary["error"],
        "seconds": summary["seconds"],
    }
    _store_run(cached, raw)
    return _decode(rtl, raw, total, wall)


def _store_run(path: Path, raw: dict) -> None:
    # Result words can be wider than 64 bits: kept as hex text.
    save_arrays(
        path,
        in_cycle=raw["in_cycle"],
        out_cycle=raw["out_cycle"],
        tag=np.asarray(raw["tag"], np.int64),
        data=np.asarray([f"{d:x}" for d in raw["data"]]),
        scalars=np.asarray([raw["cycles"], int(raw["error"]), raw["seconds"]], np.float64),
    )


def _cached_run(path: Path) -> dict | None:
    z = load_arrays(path, "simulation result", "simulating again", ("in_cycle", "out_cycle", "tag", "data", "scalars"))
    if z is None:
        return None
    cycles, error, seconds = z["scalars"].tolist()
    return {
        "in_cycle": z["in_cycle"],
        "out_cycle": z["out_cycle"],
        "tag": [int(t) for t in z["tag"]],
        "data": [int(str(d), 16) for d in z["data"]],
        "cycles": int(cycles),
        "error": bool(error),
        "seconds": float(seconds),
    }


def _simulate_cocotb(rtl: RtlDesign, rows: np.ndarray, total: int, cfg: dict) -> SimResult:
    """The per-cycle Python testbench (rtl_sim/harness/ee_top_tb.py) on the bare top."""
    build_dir = build(rtl)
    with tempfile.TemporaryDirectory(prefix="eehw-sim-") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "inputs.npy", rows)
        cfg = {
            **cfg,
            "inputs": str(tmp / "inputs.npy"),
            "in_width": rtl.plan.blocks[0].in_w,
            "tag_w": rtl.tag_w,
            "output": str(tmp / "out.npz"),
        }
        wall = run_harness(rtl.top, rtl.top, "ee_top_tb", build_dir, tmp, cfg, tmp / "out.npz")
        npz = np.load(tmp / "out.npz")
        raw = {
            "in_cycle": npz["in_cycle"],
            "out_cycle": npz["out_cycle"],
            "tag": [int(t) for t in npz["tag"]],
            "data": [int(d) for d in npz["data"]],
            "cycles": int(npz["cycles"]),
            "error": bool(npz["error"]),
            "seconds": float(npz["seconds"]),
        }
    return _decode(rtl, raw, total, wall)


def _decode(rtl: RtlDesign, raw: dict, total: int, wall: float) -> SimResult:
    fmt = rtl.decision
    exit_w = max(1, (len(rtl.plan.exits) - 1).bit_length())
    tags = TagQueue(total, rtl.tag_w)
    exit_index = np.full(total, -1, dtype=np.int64)
    prediction = np.full(total, -1, dtype=np.int64)
    confidence = np.full(total, -1, dtype=np.int64)
    out_cycle = np.full(total, -1, dtype=np.int64)
    duplicates = 0
    for word, tag, cyc in zip(raw["data"], raw["tag"], raw["out_cycle"]):
        i = tags.pop(tag)
        if i is None:
            duplicates += 1
            continue
        exit_index[i] = word & ((1 << exit_w) - 1)
        prediction[i] = (word >> exit_w) & ((1 << fmt.class_w) - 1)
        confidence[i] = word >> (exit_w + fmt.class_w)
        out_cycle[i] = cyc
    missing = int((exit_index < 0).sum())
    in_cycle = np.full(total, -1, dtype=np.int64)
    sent = np.asarray(raw["in_cycle"], dtype=np.int64)[:total]
    in_cycle[: len(sent)] = sent
    return SimResult(
        exit_index,
        prediction,
        confidence,
        out_cycle - in_cycle,
        in_cycle,
        out_cycle,
        int(raw["cycles"]),
        wall,
        duplicates,
        missing,
        bool(raw["error"]),
        float(raw["seconds"]),
    )
