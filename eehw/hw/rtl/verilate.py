"""Verilator builds of a generated design: the simulation wrapper (rtl_sim/harness/ee_tb.v.j2, the samples, gaps, stalls and logs in Verilog so a run goes at Verilator's speed) and the top itself for the cocotb harness, cached by a hash of every source, memory file and build option so a design compiles once."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import jinja2

from eehw.cache import atomic_write_bytes
from eehw.errors import EehwError
from eehw.hw.rtl.design import RtlDesign
from eehw.hw.tools.verilator import verilator_env
from eehw.paths import cache_dir, shipped

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


def _build_hash(rtl: RtlDesign, extra: bytes = b"") -> str:
    h = hashlib.sha256(extra)
    for src in rtl.sources:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    for mem in sorted(rtl.out_dir.glob("*.mem")):
        h.update(mem.name.encode())
        h.update(mem.read_bytes())
    return h.hexdigest()[:16]


def _BuildRunner(env: dict[str, str], header: Path | None = None):
    """cocotb's Verilator runner with ``env`` over the process environment for its build
    commands only (no change to os.environ, so builds in threads do not interfere); ``header``:
    the precompiled runtime header (_precompiled_header) for a build that compiles one unit."""
    from cocotb_tools.runner import Verilator

    class Runner(Verilator):
        def _set_env_build(self) -> None:
            super()._set_env_build()
            self.env.update(env)

        def _execute_cmds(self, cmds, cwd, stdout=None) -> None:
            # A build is [verilator, make]: between the two, the cached main object goes in.
            if len(cmds) != 2 or cmds[1][0] != "make":
                return super()._execute_cmds(cmds, cwd, stdout)
            super()._execute_cmds(cmds[:1], cwd, stdout)
            build_dir = Path(self.build_dir)
            classes = build_dir / "Vtop_classes.mk"
            # A larger model is compiled in parallel units that include Verilator's own
            # precompiled design header first (gcc takes one PCH a unit, the first included).
            if header is not None and classes.exists() and "VM_PARALLEL_BUILDS = 0" in classes.read_text():
                # -Winvalid-pch: a header gcc cannot use says so in the build log. A space inside
                # a variable's value in MAKEFLAGS is written "\\ ".
                self.env["MAKEFLAGS"] += f" USER_CPPFLAGS=-Winvalid-pch\\ -include\\ {header}"
            main = _cached_main(build_dir, self.env.get("MAKEFLAGS", ""))
            super()._execute_cmds(cmds[1:], cwd, stdout)
            if main is not None and not main.exists() and (build_dir / MAIN_OBJECT).exists():
                atomic_write_bytes(main, (build_dir / MAIN_OBJECT).read_bytes())

    return Runner()


# No pytest assertion rewriting in the simulator's Python: installing cocotb's hook costs 0.6 s a
# run (it loads hypothesis), against 0.02 s for a few hundred samples of a random model (a run
# measured 0.9 s -> 0.27 s). The harnesses report through their result files; a failing assert
# in a testbench still shows its line and message.
NO_ASSERT_REWRITE = {"COCOTB_REWRITE_ASSERTION_FILES": ""}

MAIN_OBJECT = "verilator.o"  # cocotb's simulation main (share/lib/verilator/verilator.cpp)


def _cached_main(build_dir: Path, makeflags: str) -> Path | None:
    """The cache entry for cocotb's main object of this build, copied into ``build_dir`` if it
    is there (None if the build cannot use one).

    That object is about half the compile work of a small design (0.67 of 1.5 s at -O0), yet it
    depends on the design only through the generated class header Vtop.h (its ports: the object
    allocates a Vtop), so it is keyed by that header, the makefile, the source and the make
    options, and make, finding it newer than its source, links it as it is."""
    from cocotb_tools.config import share_dir

    header, makefile = build_dir / "Vtop.h", build_dir / "Vtop.mk"
    source = share_dir / "lib" / "verilator" / "verilator.cpp"
    if not (header.exists() and makefile.exists() and source.exists()):
        return None
    key = hashlib.sha256(
        b"\0".join([header.read_bytes(), makefile.read_bytes(), source.read_bytes(), makeflags.encode()])
    )
    entry = cache_dir() / "verilator" / "main" / f"{key.hexdigest()[:24]}.o"
    if entry.exists():
        shutil.copyfile(entry, build_dir / MAIN_OBJECT)
    return entry


def _make_env(make_options: tuple[str, ...] = MAKE_OPTIONS) -> dict[str, str]:
    """Verilator's environment with our make options only (a caller's MAKEFLAGS, e.g. a test
    session's -O0, never reaches a cached model)."""
    env = verilator_env({key: value for key, value in os.environ.items() if key != "MAKEFLAGS"})
    # The runner looks up `verilator` on the process PATH (idempotent, so safe from threads).
    os.environ.update(VERILATOR_ROOT=env["VERILATOR_ROOT"], PATH=env["PATH"])
    env["MAKEFLAGS"] = " ".join([env["MAKEFLAGS"], *make_options])
    return env


def _publish(tmp: Path, folder: Path) -> None:
    """Move a finished build from ``tmp`` to ``folder`` and stamp it ``.built``, unless another
    process or thread finished first (then its folder stays and ``tmp`` goes)."""
    if not (folder / ".built").exists():
        shutil.rmtree(folder, ignore_errors=True)
        try:
            tmp.rename(folder)
            (folder / ".built").touch()
        except OSError:
            pass
    shutil.rmtree(tmp, ignore_errors=True)


def _runtime_objects(env: dict[str, str]) -> list[Path]:
    """Verilator's runtime (verilated*.o), compiled once per Verilator install and make options.

    Those objects do not depend on the design (their .d files list only Verilator's headers)
    but are about 40% of a design's build, and verilated.mk rebuilds them in every build folder.
    Each build links these instead (VK_GLOBAL_OBJS empty, the objects in LOADLIBES). Empty if the
    cache path has a space (make could not take it), so the build compiles its own.
    """
    root = Path(env["VERILATOR_ROOT"])
    key = hashlib.sha256(
        "\0".join(
            [
                str(root),
                *MAKE_OPTIONS,
                *(p.name + str(p.stat().st_mtime_ns) for p in sorted((root / "include").glob("verilated*.cpp"))),
            ]
        ).encode()
    )
    folder = cache_dir() / "verilator" / f"runtime-{key.hexdigest()[:16]}"
    if " " in str(folder):
        return []
    if not (folder / ".built").exists():
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            _BuildRunner(env).build(
                sources=[str(shipped("rtl_sim") / "harness" / "eehw_runtime.v")],
                hdl_toplevel="eehw_runtime",
                build_dir=str(tmp),
                always=True,
                log_file=str(tmp / "build.log"),
            )
        except (Exception, SystemExit):
            return []  # the design's own build will say what is wrong
        _publish(tmp, folder)
    return sorted(folder.glob("verilated*.o"))


PCH_HEADER = "eehw_verilated.h"  # Verilator's runtime headers, included first by every build


def _precompiled_header(runtime: Path, env: dict[str, str]) -> Path | None:
    """Verilator's runtime headers precompiled once per runtime build and make options, for every
    design build to include first (``-include``).

    Parsing verilated.h is 0.6 s of a small design's 0.8 s C++ compile (a random model's wrapper
    at -O0: 0.83 s -> 0.45 s with it). It is compiled by verilated.mk's own PCH rule in the
    runtime's build folder, so with exactly the flags a design's objects get: gcc uses a PCH only
    then, and otherwise reads the header itself (slower, never wrong). None if it cannot be built.
    """
    key = hashlib.sha256(env["MAKEFLAGS"].encode()).hexdigest()[:16]
    folder = runtime.with_name(f"{runtime.name}-pch-{key}")
    if not (folder / ".built").exists():
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / PCH_HEADER).write_text('#include "verilated.h"\n#include "verilated_dpi.h"\n')
        target = tmp / f"{PCH_HEADER}.fast.gch"  # verilated.mk: %.fast.gch from %, at OPT_FAST
        make = subprocess.run(
            ["make", "-C", str(runtime), "-f", "Vtop.mk", str(target)], env=env, capture_output=True, check=False
        )
        if make.returncode != 0 or not target.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        target.rename(tmp / f"{PCH_HEADER}.gch")
        _publish(tmp, folder)
    return folder / PCH_HEADER


def verilate(
    sources: list[Path],
    toplevel: str,
    build_dir: Path,
    build_args: list[str],
    make_options: tuple[str, ...] = MAKE_OPTIONS,
) -> Path:
    """Verilator build of ``toplevel`` into ``build_dir`` unless a finished one is there (the
    folder name carries the content hash); built in a temporary folder and renamed, so an
    interrupted build is never reused. The inner make gets our options only (MAKEFLAGS is
    replaced for the build, so a caller's optimisation flags never reach a cached model)."""
    stamp = build_dir / ".built"
    if stamp.exists():
        return build_dir
    env = _make_env(make_options)
    runtime = _runtime_objects(_make_env())  # the runtime is built once, optimised, whatever the model's options
    header = None
    if runtime:
        header = _precompiled_header(runtime[0].parent, env)
        # A space inside a variable's value in MAKEFLAGS is written "\\ ".
        env["MAKEFLAGS"] += " VK_GLOBAL_OBJS= LOADLIBES=" + "\\ ".join(map(str, runtime))
    tmp = build_dir.with_name(build_dir.name + f".tmp{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log = tmp / "build.log"
    try:
        _BuildRunner(env, header).build(
            sources=[str(s) for s in sources],
            hdl_toplevel=toplevel,
            build_dir=str(tmp),
            always=True,
            build_args=build_args,
            log_file=str(log),
        )
    except (Exception, SystemExit) as exc:
        lines = log.read_text().strip().splitlines() if log.exists() else []
        # Verilator's own error first (a warning that stops it before its "Exiting due to N
        # warning(s)"), else the compiler's, else the log's last line.
        errors = [line for line in lines if line.startswith(("%Error", "%Warning")) and "Exiting due to" not in line]
        errors += [line for line in lines if "error:" in line]
        reason = errors[0] if errors else lines[-1] if lines else str(exc)
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


@functools.cache
def _harness_templates() -> jinja2.Environment:
    """rtl_sim/harness's templates, one environment a process (each compiled once)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(shipped("rtl_sim") / "harness")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def wrapper_source(rtl: RtlDesign, inject: str = "") -> str:
    """The simulation wrapper's Verilog for ``rtl`` (rendered from rtl_sim/harness/ee_tb.v.j2);
    ``inject``: Verilog statements added inside the wrapper (fault injection, e.g. a ``force``
    on a signal under ``u_dut``)."""
    fmt = rtl.decision
    first = rtl.plan.blocks[0]
    return (
        _harness_templates()
        .get_template("ee_tb.v.j2")
        .render(
            top=rtl.top,
            depth=wrapper_capacity(rtl) * first.in_beats,
            tag_w=rtl.tag_w,
            in_bits=first.in_bits,
            beats=first.in_beats,
            res_w=rtl.res_w,
            n_exits=len(rtl.plan.exits),
            thr_w=fmt.thr_w,
            inject=inject,
        )
    )


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


def run_harness(
    what: str,
    toplevel: str,
    test_module: str,
    build_dir: Path,
    tmp: Path,
    cfg: dict,
    product: Path,
    plusargs: list[str] = (),
) -> float:
    """Run a harness (rtl_sim/harness/<test_module>.py) on a Verilator build with ``cfg`` in
    EEHW_TB_CONFIG; the wall seconds, or EehwError naming ``what`` and the log's reason if
    ``product`` (the file the harness writes at its end) is missing."""
    from cocotb_tools.runner import get_runner

    (tmp / "tb.json").write_text(json.dumps(cfg))
    start = time.perf_counter()
    get_runner("verilator").test(
        hdl_toplevel=toplevel,
        hdl_toplevel_lang="verilog",
        test_module=test_module,
        test_dir=str(shipped("rtl_sim") / "harness"),
        build_dir=str(build_dir),
        plusargs=list(plusargs),
        extra_env={"EEHW_TB_CONFIG": str(tmp / "tb.json"), **NO_ASSERT_REWRITE},
        results_xml=str(tmp / "results.xml"),
        log_file=str(tmp / "sim.log"),
    )
    wall = time.perf_counter() - start
    if not product.exists():
        log = (tmp / "sim.log").read_text(errors="replace") if (tmp / "sim.log").exists() else ""
        reason = next(
            (line for line in log.splitlines() if "Error" in line or "timeout" in line or "FAIL" in line), "no output"
        )
        raise EehwError(f"simulation of {what} failed: {reason.strip()}")
    return wall
