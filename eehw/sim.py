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
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from eehw.cache import load_arrays, save_arrays
from eehw.errors import EehwError
from eehw.paths import cache_dir, shipped
from eehw.rtl import RtlDesign
from eehw.verilator import verilator_env

WRAPPER_TOP = "eehw_tb"
WRAPPER_SAMPLES = 1 << 16  # distinct input samples the wrapper's memory holds (repeat is free) ...
WRAPPER_WORDS = 1 << 23  # ... within this many input beats (fmnist: 10,700 samples of 784 beats)
# Only the wrapper's ports public (its header says why), -O3, fast X handling (the wrapper
# resets everything it reads).
WRAPPER_BUILD_ARGS = ("--no-public-flat-rw", "-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal")
# C++ optimisation of the model's per-cycle code (verilated.mk's default -Os leaves Verilator's
# small arithmetic helpers out of line); its run-once construction code is built unoptimised.
MAKE_OPTIONS = ("OPT_FAST=-O2", "OPT_SLOW=-O0")
# For a few hundred samples of a small design the C++ optimiser costs more than it saves: the
# model compiles in half the time unoptimised (measured: 1.7 s against 3.4 s at -O2).
QUICK_MAKE_OPTIONS = ("OPT_FAST=-O0", "OPT_SLOW=-O0")
# ... and Verilator keeps modules of more than 500 nodes as classes of their own instead of
# inlining every instance: the decision units, gates and MVUs of one design share their code, so
# the C++ is smaller (a 3-exit random model: 1.36 MB against 1.55 MB) and builds in 4.8 s against
# 8.4 s (two runs each, sim.verilate of one wrapper, on one free core).
QUICK_BUILD_ARGS = ("--inline-mult", "500")
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


def _build_hash(rtl: RtlDesign, extra: bytes = b"") -> str:
    h = hashlib.sha256(extra)
    for src in rtl.sources:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    for mem in sorted(rtl.out_dir.glob("*.mem")):
        h.update(mem.name.encode())
        h.update(mem.read_bytes())
    return h.hexdigest()[:16]


def _BuildRunner(env: dict[str, str]):
    """cocotb's Verilator runner with ``env`` over the process environment for its build
    commands only (no change to os.environ, so builds in threads do not interfere)."""
    from cocotb_tools.runner import Verilator

    class Runner(Verilator):
        def _set_env_build(self) -> None:
            super()._set_env_build()
            self.env.update(env)

    return Runner()


def _make_env(make_options: tuple[str, ...] = MAKE_OPTIONS) -> dict[str, str]:
    """Verilator's environment with our make options only (a caller's MAKEFLAGS, e.g. a test
    session's -O0, never reaches a cached model)."""
    env = verilator_env({key: value for key, value in os.environ.items() if key != "MAKEFLAGS"})
    # The runner looks up `verilator` on the process PATH (idempotent, so safe from threads).
    os.environ.update(VERILATOR_ROOT=env["VERILATOR_ROOT"], PATH=env["PATH"])
    env["MAKEFLAGS"] = " ".join([env["MAKEFLAGS"], *make_options])
    return env


def _runtime_objects(env: dict[str, str]) -> list[Path]:
    """Verilator's runtime (verilated*.o), compiled once per Verilator install and make options.

    Those objects do not depend on the design (their .d files list only Verilator's headers)
    but are about 40% of a design's build, and verilated.mk rebuilds them in every build folder.
    Each build links these instead (VK_GLOBAL_OBJS empty, the objects in LOADLIBES). Empty if the
    cache path has a space (make could not take it), so the build compiles its own.
    """
    root = Path(env["VERILATOR_ROOT"])
    key = hashlib.sha256("\0".join([str(root), *MAKE_OPTIONS, *(p.name + str(p.stat().st_mtime_ns)
                                      for p in sorted((root / "include").glob("verilated*.cpp")))]).encode())
    folder = cache_dir() / "verilator" / f"runtime-{key.hexdigest()[:16]}"
    if " " in str(folder):
        return []
    if not (folder / ".built").exists():
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "eehw_runtime.v").write_text("module eehw_runtime (input wire clk /*verilator public*/);\nendmodule\n")
        try:
            _BuildRunner(env).build(sources=[str(tmp / "eehw_runtime.v")], hdl_toplevel="eehw_runtime",
                                    build_dir=str(tmp), always=True, log_file=str(tmp / "build.log"))
        except (Exception, SystemExit):
            return []  # the design's own build will say what is wrong
        if not (folder / ".built").exists():  # else another process finished first
            shutil.rmtree(folder, ignore_errors=True)
            try:
                tmp.rename(folder)
                (folder / ".built").touch()
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(folder.glob("verilated*.o"))


def verilate(sources: list[Path], toplevel: str, build_dir: Path, build_args: list[str],
             make_options: tuple[str, ...] = MAKE_OPTIONS) -> Path:
    """Verilator build of ``toplevel`` into ``build_dir`` unless a finished one is there (the
    folder name carries the content hash); built in a temporary folder and renamed, so an
    interrupted build is never reused. The inner make gets our options only (MAKEFLAGS is
    replaced for the build, so a caller's optimisation flags never reach a cached model)."""
    stamp = build_dir / ".built"
    if stamp.exists():
        return build_dir
    env = _make_env(make_options)
    runtime = _runtime_objects(_make_env())  # the runtime is built once, optimised, whatever the model's options
    if runtime:
        # A space inside a variable's value in MAKEFLAGS is written "\\ ".
        env["MAKEFLAGS"] += " VK_GLOBAL_OBJS= LOADLIBES=" + "\\ ".join(map(str, runtime))
    tmp = build_dir.with_name(build_dir.name + f".tmp{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log = tmp / "build.log"
    try:
        _BuildRunner(env).build(sources=[str(s) for s in sources], hdl_toplevel=toplevel, build_dir=str(tmp),
                                always=True, build_args=build_args, log_file=str(log))
    except (Exception, SystemExit) as exc:
        lines = log.read_text().strip().splitlines() if log.exists() else []
        reason = next((line for line in lines if "%Error" in line), lines[-1] if lines else str(exc))
        raise EehwError(f"Verilator build of {toplevel} failed: {reason.strip()} (log: {log})") from None
    if stamp.exists():  # built meanwhile by another process or thread, maybe in use: keep that one
        shutil.rmtree(tmp, ignore_errors=True)
        return build_dir
    for header in tmp.glob("*.gch"):  # precompiled headers: 150 MB a build, needed only to compile
        header.unlink()
    shutil.rmtree(build_dir, ignore_errors=True)
    tmp.rename(build_dir)
    stamp.touch()
    return build_dir


def build(rtl: RtlDesign) -> Path:
    """Compile the bare top (for the per-cycle cocotb harness) once per content hash."""
    build_dir = cache_dir() / "verilator" / f"{rtl.top}-{_build_hash(rtl)}"
    return verilate(list(rtl.sources), rtl.top, build_dir, ["-O2"])


def wrapper_source(rtl: RtlDesign, inject: str = "") -> str:
    """The simulation wrapper's Verilog for ``rtl`` (rendered from rtl_sim/harness/ee_tb.v.j2);
    ``inject``: Verilog statements added inside the wrapper (fault injection, e.g. a ``force``
    on a signal under ``u_dut``)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(shipped("rtl_sim") / "harness")),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    fmt = rtl.decision
    first = rtl.plan.blocks[0]
    return env.get_template("ee_tb.v.j2").render(
        top=rtl.top, depth=wrapper_capacity(rtl) * first.in_beats, tag_w=rtl.tag_w, in_bits=first.in_bits,
        beats=first.in_beats, res_w=rtl.res_w, n_exits=len(rtl.plan.exits), thr_w=fmt.thr_w, inject=inject)


def wrapper_capacity(rtl: RtlDesign) -> int:
    """Distinct samples the simulation wrapper's input memory holds."""
    return min(WRAPPER_SAMPLES, WRAPPER_WORDS // rtl.plan.blocks[0].in_beats)


def build_wrapper(rtl: RtlDesign, inject: str = "", quick: bool = False) -> Path:
    """Compile the top inside its simulation wrapper once per content hash (the wrapper and the
    build options are part of the hash)."""
    text = wrapper_source(rtl, inject)
    make_options = QUICK_MAKE_OPTIONS if quick else MAKE_OPTIONS
    build_args = [*WRAPPER_BUILD_ARGS, *(QUICK_BUILD_ARGS if quick else ())]
    key = _build_hash(rtl, "\0".join([text, *build_args, *make_options]).encode())
    build_dir = cache_dir() / "verilator" / f"{rtl.top}-tb-{key}"
    if (build_dir / ".built").exists():
        return build_dir
    src_dir = cache_dir() / "verilator" / "wrappers"
    src_dir.mkdir(parents=True, exist_ok=True)
    wrapper = src_dir / f"{rtl.top}-{key}.v"
    wrapper.write_text(text)
    return verilate([*rtl.sources, wrapper], WRAPPER_TOP, build_dir, build_args, make_options)


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


def simulate(rtl: RtlDesign, x_int: np.ndarray, thresholds: list[int | None], *, repeat: int = 1,
             gap_p: float = 0.0, stall_p: float = 0.0, one_at_a_time: bool = False, seed: int = 0,
             harness: str = "wrapper", inject: str = "", quick: bool = False) -> SimResult:
    """Run samples through the design; ``thresholds`` has one register value per non-final
    exit of the design (None disables that exit). The test set goes in ``repeat`` times; each
    cycle the input is held back with probability ``gap_p`` and the output stalled with
    probability ``stall_p``. ``harness="cocotb"`` runs the per-cycle Python testbench instead
    (much slower; its random gaps and stalls are a different sequence). ``inject`` goes into the
    wrapper (see wrapper_source). ``quick`` builds the model unoptimised: for a few hundred
    samples of a small design, where the build costs more than the run."""
    if harness not in HARNESSES:
        raise EehwError(f"unknown simulation harness '{harness}'; use one of {', '.join(HARNESSES)}")
    threshold_word, enable_word = _register_words(rtl, thresholds)
    beats = rtl.plan.blocks[0].in_beats
    rows = _hw_rows(x_int, beats)
    samples = len(rows) // beats
    if samples == 0 or repeat < 1:
        raise EehwError(f"{rtl.top}: nothing to simulate ({samples} samples x repeat {repeat})")
    total = samples * repeat
    cfg = {"threshold_word": threshold_word, "enable_word": enable_word, "early_exits": len(rtl.plan.exits) - 1,
           "seed": int(seed)}
    # No handshake for this many cycles means a lost sample or a deadlock, not slow stimulus.
    idle_limit = 1000 + 20 * rtl.latency_bound / ((1 - gap_p) * (1 - stall_p))
    if harness == "cocotb":
        if inject:
            raise EehwError("fault injection needs the wrapper harness")
        return _simulate_cocotb(rtl, rows, total, {**cfg, "repeat": repeat, "gap_p": gap_p, "stall_p": stall_p,
                                                   "one_at_a_time": one_at_a_time, "beats": beats,
                                                   "idle_limit": int(idle_limit)})
    if samples > wrapper_capacity(rtl):
        raise EehwError(f"{samples} distinct samples exceed the simulation wrapper's {wrapper_capacity(rtl)}; "
                        f"simulate them in chunks")
    cfg.update(n_words=samples, total=total, gap_thr=_probability("gap_p", gap_p),
               stall_thr=_probability("stall_p", stall_p), one_at_a_time=int(one_at_a_time),
               idle_limit=min(int(idle_limit), (1 << 32) - 1), max_cycles=(1 << 63) - 1)
    build_dir = build_wrapper(rtl, inject, quick)
    # The same build on the same stimulus gives the same cycles: a warm flow reads the result.
    key = hashlib.sha256(json.dumps([build_dir.name, cfg], sort_keys=True).encode() + rows.tobytes()).hexdigest()[:24]
    cached = cache_dir() / "sim" / f"{rtl.top}-{key}.npz"
    raw = _cached_run(cached)
    if raw is not None:
        return _decode(rtl, raw, total, 0.0)
    with tempfile.TemporaryDirectory(prefix="eehw-sim-") as tmp:
        tmp = Path(tmp)
        _memory_file(tmp / "inputs.hex", rows, rtl.plan.blocks[0].in_w)
        cfg["summary"] = str(tmp / "summary.json")
        wall = _run(rtl, WRAPPER_TOP, "ee_tb", build_dir, tmp, cfg, tmp / "summary.json",
                    plusargs=[f"+eehw_inputs={tmp / 'inputs.hex'}", f"+eehw_in_log={tmp / 'in.log'}",
                              f"+eehw_out_log={tmp / 'out.log'}"])
        summary = json.loads((tmp / "summary.json").read_text())
        if summary["timeout"]:
            raise EehwError(f"simulation of {rtl.top} stalled: {summary['received']} of {total} results after "
                            f"{summary['cycles']} cycles (no handshake for {cfg['idle_limit']} cycles)")
        in_cycle = np.array([int(line, 16) for line in (tmp / "in.log").read_text().split()], dtype=np.int64)
        out = [line.split() for line in (tmp / "out.log").read_text().splitlines()]
    raw = {"in_cycle": in_cycle, "out_cycle": np.array([int(o[0], 16) for o in out], dtype=np.int64),
           "tag": [int(o[1], 16) for o in out], "data": [int(o[2], 16) for o in out],
           "cycles": summary["cycles"], "error": summary["error"], "seconds": summary["seconds"]}
    _store_run(cached, raw)
    return _decode(rtl, raw, total, wall)


def _store_run(path: Path, raw: dict) -> None:
    # Result words can be wider than 64 bits: kept as hex text.
    save_arrays(path, in_cycle=raw["in_cycle"], out_cycle=raw["out_cycle"], tag=np.asarray(raw["tag"], np.int64),
                data=np.asarray([f"{d:x}" for d in raw["data"]]),
                scalars=np.asarray([raw["cycles"], int(raw["error"]), raw["seconds"]], np.float64))


def _cached_run(path: Path) -> dict | None:
    z = load_arrays(path, "simulation result", "simulating again", ("in_cycle", "out_cycle", "tag", "data", "scalars"))
    if z is None:
        return None
    cycles, error, seconds = z["scalars"].tolist()
    return {"in_cycle": z["in_cycle"], "out_cycle": z["out_cycle"], "tag": [int(t) for t in z["tag"]],
            "data": [int(str(d), 16) for d in z["data"]], "cycles": int(cycles), "error": bool(error),
            "seconds": float(seconds)}


def _simulate_cocotb(rtl: RtlDesign, rows: np.ndarray, total: int, cfg: dict) -> SimResult:
    """The per-cycle Python testbench (rtl_sim/harness/ee_top_tb.py) on the bare top."""
    build_dir = build(rtl)
    with tempfile.TemporaryDirectory(prefix="eehw-sim-") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "inputs.npy", rows)
        cfg = {**cfg, "inputs": str(tmp / "inputs.npy"), "in_width": rtl.plan.blocks[0].in_w, "tag_w": rtl.tag_w,
               "output": str(tmp / "out.npz")}
        wall = _run(rtl, rtl.top, "ee_top_tb", build_dir, tmp, cfg, tmp / "out.npz")
        npz = np.load(tmp / "out.npz")
        raw = {"in_cycle": npz["in_cycle"], "out_cycle": npz["out_cycle"], "tag": [int(t) for t in npz["tag"]],
               "data": [int(d) for d in npz["data"]], "cycles": int(npz["cycles"]), "error": bool(npz["error"]),
               "seconds": float(npz["seconds"])}
    return _decode(rtl, raw, total, wall)


def _run(rtl: RtlDesign, toplevel: str, test_module: str, build_dir: Path, tmp: Path, cfg: dict, product: Path,
         plusargs: list[str] = ()) -> float:
    """Run a harness (rtl_sim/harness/<test_module>.py) on a build with ``cfg`` in
    EEHW_TB_CONFIG; the wall seconds, or EehwError with the log's reason if ``product`` (the
    file the harness writes at its end) is missing."""
    from cocotb_tools.runner import get_runner

    (tmp / "tb.json").write_text(json.dumps(cfg))
    start = time.perf_counter()
    get_runner("verilator").test(hdl_toplevel=toplevel, hdl_toplevel_lang="verilog", test_module=test_module,
                                 test_dir=str(shipped("rtl_sim") / "harness"), build_dir=str(build_dir),
                                 plusargs=list(plusargs), extra_env={"EEHW_TB_CONFIG": str(tmp / "tb.json")},
                                 results_xml=str(tmp / "results.xml"), log_file=str(tmp / "sim.log"))
    wall = time.perf_counter() - start
    if not product.exists():
        log = (tmp / "sim.log").read_text() if (tmp / "sim.log").exists() else ""
        reason = next((line for line in log.splitlines() if "Error" in line or "timeout" in line or "FAIL" in line),
                      "no output")
        raise EehwError(f"simulation of {rtl.top} failed: {reason.strip()}")
    return wall


def _decode(rtl: RtlDesign, raw: dict, total: int, wall: float) -> SimResult:
    fmt = rtl.decision
    exit_w = max(1, (len(rtl.plan.exits) - 1).bit_length())
    tag_mask = (1 << rtl.tag_w) - 1
    # Map each result back to its input: tags count up modulo 2^TAG_W and every path is in
    # order, so the n-th result carrying tag t belongs to the earliest unclaimed input with tag t.
    pending: dict[int, list[int]] = {}
    for i in range(total - 1, -1, -1):
        pending.setdefault(i & tag_mask, []).append(i)
    exit_index = np.full(total, -1, dtype=np.int64)
    prediction = np.full(total, -1, dtype=np.int64)
    confidence = np.full(total, -1, dtype=np.int64)
    out_cycle = np.full(total, -1, dtype=np.int64)
    duplicates = 0
    for word, tag, cyc in zip(raw["data"], raw["tag"], raw["out_cycle"]):
        queue = pending.get(int(tag))
        if not queue:
            duplicates += 1
            continue
        i = queue.pop()
        exit_index[i] = word & ((1 << exit_w) - 1)
        prediction[i] = (word >> exit_w) & ((1 << fmt.class_w) - 1)
        confidence[i] = word >> (exit_w + fmt.class_w)
        out_cycle[i] = cyc
    missing = int((exit_index < 0).sum())
    in_cycle = np.full(total, -1, dtype=np.int64)
    sent = np.asarray(raw["in_cycle"], dtype=np.int64)[:total]
    in_cycle[:len(sent)] = sent
    return SimResult(exit_index, prediction, confidence, out_cycle - in_cycle, in_cycle, out_cycle,
                     int(raw["cycles"]), wall, duplicates, missing, bool(raw["error"]), float(raw["seconds"]))
