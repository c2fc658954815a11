"""Stream plumbing of the early-exit top: axis_fifo, axis_fork, exit_gate, exit_merge.

Each module is simulated with Verilator through cocotb against a reference model (deques for
the FIFO and fork, rtl_sim/models/exit_{gate,merge}.py for the others) under constrained-random
valid gaps and tready backpressure; each is also linted with `verilator --lint-only -Wall`, and
exit_gate + exit_merge are synthesised with yosys `synth_xilinx -family xc7`.
"""

import json
import shutil
from pathlib import Path

import pytest
from hdl_tools import build_and_run, lint, synth_xc7


def simulate(top: str, params: dict, cfg: dict, build_dir: Path) -> None:
    build_and_run(top, params, build_dir, {"PLUMB_CFG": json.dumps({**params, **cfg})})


MIXES = [[0.5, 0.5], [0.1, 0.7], [0.7, 0.1], [0.0, 0.3], [0.3, 0.0]]


@pytest.mark.parametrize("depth, width", [(2, 8), (5, 37)])
def test_axis_fifo(vl_env, tmp_path, depth, width):
    params = {"W": width, "TAG_W": 6, "DEPTH": depth}
    simulate("axis_fifo", params, {"beats": 5000, "mixes": MIXES, "seed": depth}, tmp_path / "sim")


@pytest.mark.parametrize("width", [8, 37])
def test_axis_fork(vl_env, tmp_path, width):
    params = {"W": width, "TAG_W": 5}
    mixes = [[0.5, 0.5, 0.5], [0.0, 0.7, 0.1], [0.1, 0.1, 0.7], [0.6, 0.0, 0.0], [0.0, 0.3, 0.3]]
    simulate("axis_fork", params, {"beats": 5000, "mixes": mixes, "seed": width}, tmp_path / "sim")


@pytest.mark.parametrize("depth", [2, 6])
def test_exit_gate(vl_env, tmp_path, depth):
    params = {"FEAT_W": 48, "DEC_W": 13, "TAG_W": 7, "DEPTH": depth}
    # exit probability, feature gap, decision gap, m_feat stall, m_res stall
    mixes = [[0.5, 0.3, 0.3, 0.3, 0.3], [0.9, 0.1, 0.5, 0.0, 0.7], [0.1, 0.5, 0.1, 0.7, 0.0],
             [0.5, 0.0, 0.0, 0.5, 0.5], [0.3, 0.6, 0.6, 0.1, 0.1]]
    simulate("exit_gate", params, {"beats": 5000, "mixes": mixes, "seed": depth}, tmp_path / "sim")


@pytest.mark.parametrize("k", [1, 3, 4])
def test_exit_merge(vl_env, tmp_path, k):
    params = {"K": k, "DEC_W": 11, "TAG_W": 6}
    mixes = [[0.5, 0.5], [0.1, 0.7], [0.8, 0.1], [0.0, 0.3], [0.3, 0.0]]
    simulate("exit_merge", params, {"beats": 4000, "mixes": mixes, "seed": k}, tmp_path / "sim")


LINT_CASES = [
    ("axis_fifo", {"DEPTH": 2}), ("axis_fifo", {"DEPTH": 5}), ("axis_fifo", {"DEPTH": 16}),
    ("axis_fork", {}), ("exit_gate", {"DEPTH": 2}), ("exit_gate", {"DEPTH": 9}),
    ("exit_merge", {"K": 1}), ("exit_merge", {"K": 3}), ("exit_merge", {"K": 4}), ("exit_merge", {"K": 8}),
]


@pytest.mark.parametrize("top, params", LINT_CASES, ids=[f"{t}-{p}" for t, p in LINT_CASES])
def test_lint(vl_env, top, params):
    lint(top, params)


def test_yosys_synth_xc7(tmp_path):
    if shutil.which("yosys") is None:
        pytest.skip("yosys not installed (Debian package `yosys` runs synth_xilinx)")
    runs = {
        "exit_gate": ("exit_gate", {"FEAT_W": 160, "DEC_W": 16, "TAG_W": 8, "DEPTH": 16}),
        "exit_merge": ("exit_merge", {"K": 4, "DEC_W": 16, "TAG_W": 8}),
    }
    synth_xc7(runs, tmp_path)
