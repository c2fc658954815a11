"""mvu.v (folded matrix-vector unit + requantisation) against eehw.golden.Dense and Quant.

Every configuration is built with Verilator through cocotb (one build folder per case under
tmp_path) and driven by cocotb_mvu.stream in three phases: back to back with no backpressure
(checks II and the first sample's latency), one sample at a time (checks the latency formula on
every sample), and random input gaps with random m_tready backpressure. Every output and the tag
order are compared with the golden model. Also: `verilator --lint-only -Wall` and a Yosys
`synth_xilinx -family xc7` run, and the memory writer's refusals.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from axis_tb import pack_rows, unpack_rows
from hdl_tools import build_and_run, lint, sources

from eehw.errors import EehwError
from eehw.golden import Dense, Quant, int_range
from eehw.rtl_weights import acc_width, write_bias_memory, write_weight_memory

TAG_W = 8


def mvu_ii(n_in: int, n_out: int, simd: int, pe: int) -> int:
    """mvu.v header: II = (IN/SIMD) * (OUT/PE)."""
    return (n_in // simd) * (n_out // pe)


def mvu_latency(ii: int) -> int:
    """mvu.v header: input handshake edge to output handshake edge, idle unit, m_tready high."""
    return ii + 5


PHASES = [  # name, input gap probability, m_tready-low probability, one sample at a time
    ("back_to_back", 0.0, 0.0, False),
    ("isolated", 0.0, 0.0, True),
    ("random", 0.4, 0.5, False),
    ("random_light", 0.1, 0.2, False),
    ("heavy_backpressure", 0.0, 0.9, False),
]


def run_stream(top: str, srcs: list[Path], params: dict, x: np.ndarray, in_w: int, ii: int,
               tmp_path: Path) -> dict[str, dict]:
    """Build ``top`` from ``srcs`` with ``params``, stream ``x`` through it in every PHASE; per phase the
    output npz contents (tag, data, in_cycle, out_cycle)."""
    rng = np.random.default_rng(len(x))
    tags = [int(t) for t in rng.integers(0, 1 << TAG_W, len(x))]
    phases = [{"name": name, "gap_p": gap, "stall_p": stall, "one_at_a_time": one, "seed": k,
               "output": str(tmp_path / f"{name}.npz")} for k, (name, gap, stall, one) in enumerate(PHASES)]
    cfg = {"words": [str(w) for w in pack_rows(x, in_w)], "tags": tags, "phases": phases,
           "max_cycles": 1000 + 40 * len(x) * (ii + 5)}  # a lost sample shows as a timeout
    cfg_path = tmp_path / "stream.json"
    cfg_path.write_text(json.dumps(cfg))
    build_and_run(top, params, tmp_path / "sim_build", {"EEHW_STREAM_CFG": str(cfg_path)}, srcs=srcs)
    out = {}
    for phase in phases:
        with np.load(phase["output"]) as f:
            out[phase["name"]] = {k: f[k] for k in f.files}
        assert list(out[phase["name"]]["tag"]) == tags, f"{phase['name']}: tags out of order, lost or duplicated"
    return out


def check_outputs(results: dict[str, dict], expected: np.ndarray, out_w: int, out_signed: bool) -> None:
    for name, res in results.items():
        got = unpack_rows(res["data"], expected.shape[1], out_w, out_signed)
        bad = np.argwhere(got != expected)
        assert not len(bad), (f"{name}: {len(bad)} wrong elements, first sample {bad[0][0]} element "
                              f"{bad[0][1]}: got {got[tuple(bad[0])]}, expected {expected[tuple(bad[0])]}")


def check_timing(results: dict[str, dict], ii: int, latency: int) -> None:
    b2b = results["back_to_back"]
    assert int(b2b["out_cycle"][0] - b2b["in_cycle"][0]) == latency, "first-sample latency"
    gaps = np.diff(b2b["out_cycle"])
    assert set(gaps.tolist()) == {ii}, f"back-to-back output spacing {sorted(set(gaps.tolist()))}, expected II={ii}"
    iso = results["isolated"]
    lat = iso["out_cycle"] - iso["in_cycle"]
    assert set(lat.tolist()) == {latency}, f"isolated latencies {sorted(set(lat.tolist()))}, expected {latency}"


# --------------------------------------------------------------------------- MVU cases


@dataclass(frozen=True)
class MvuCase:
    n_in: int
    n_out: int
    simd: int
    pe: int
    a_w: int
    a_signed: bool
    w_w: int
    b_w: int
    shift: int
    out_w: int
    out_signed: bool
    narrow: bool = False
    samples: int = 40


CASES = {
    # folded both ways, unsigned in, ReLU out (4-bit), ties at shift 3
    "fold_relu": MvuCase(12, 6, 3, 2, 4, False, 4, 10, 3, 4, False),
    # fully parallel (II = 1), signed in, shift 0, signed narrow out
    "parallel_signed": MvuCase(8, 4, 8, 4, 3, True, 3, 7, 0, 4, True, narrow=True, samples=60),
    # fully serial (SIMD = PE = 1), negative shift (exact left shift), signed 8-bit out
    "serial_leftshift": MvuCase(5, 3, 1, 1, 4, True, 5, 6, -2, 8, True),
    # SF = 1 with output folds, wide (DSP-sized) products, large shift, ReLU 8-bit out
    "wide_relu": MvuCase(16, 8, 16, 2, 8, False, 8, 18, 9, 8, False),
    # one output fold, several input folds, shift 1 (half the values are ties)
    "shift1_signed": MvuCase(20, 4, 5, 4, 5, True, 4, 9, 1, 6, True),
}


def make_data(case: MvuCase, seed: int):
    rng = np.random.default_rng(seed)
    wlo, whi = int_range(case.w_w, True)
    alo, ahi = int_range(case.a_w, case.a_signed)
    blo, bhi = int_range(case.b_w, True)
    weight = rng.integers(wlo, whi + 1, (case.n_out, case.n_in))
    weight[0, :] = wlo  # extremes: most negative row and most positive row
    if case.n_out > 1:
        weight[1, :] = whi
    bias = rng.integers(blo, bhi + 1, case.n_out)
    bias[0] = bhi
    if case.n_out > 2:
        bias[2] = blo
    x = rng.integers(alo, ahi + 1, (case.samples, case.n_in))
    x[0, :] = ahi  # worst-case accumulators
    x[1, :] = alo
    x[2, :] = 0
    return weight.astype(np.int64), bias.astype(np.int64), x.astype(np.int64)


@pytest.mark.parametrize("name", list(CASES))
def test_mvu(vl_env, tmp_path, name):
    case = CASES[name]
    weight, bias, x = make_data(case, seed=sorted(CASES).index(name))
    dense = Dense("fc", weight, bias, in_exp=0, weight_exp=0, weight_bits=case.w_w)
    quant = Quant("q", in_exp=0, out_exp=case.shift, bits=case.out_w, signed=case.out_signed, narrow=case.narrow)
    expected = quant(dense(x))
    out_min, out_max = int_range(case.out_w, case.out_signed, case.narrow)
    # the data must reach both clamp limits, or saturation is not tested
    assert expected.min() == out_min and expected.max() == out_max

    wfile, bfile = tmp_path / "w.mem", tmp_path / "b.mem"
    write_weight_memory(wfile, weight, case.simd, case.pe, case.w_w)
    write_bias_memory(bfile, bias, case.pe, case.b_w)
    params = {"IN": case.n_in, "OUT": case.n_out, "SIMD": case.simd, "PE": case.pe, "A_W": case.a_w,
              "A_SIGNED": int(case.a_signed), "W_W": case.w_w, "B_W": case.b_w, "SHIFT": case.shift,
              "OUT_W": case.out_w, "OUT_SIGNED": int(case.out_signed), "OUT_MIN": out_min, "OUT_MAX": out_max,
              "TAG_W": TAG_W, "WEIGHT_FILE": f'"{wfile}"', "BIAS_FILE": f'"{bfile}"'}
    ii = mvu_ii(case.n_in, case.n_out, case.simd, case.pe)
    results = run_stream("mvu", sources("mvu"), params, x, case.a_w, ii, tmp_path)
    check_outputs(results, expected, case.out_w, case.out_signed)
    check_timing(results, ii, mvu_latency(ii))


# --------------------------------------------------------------------------- lint, synthesis, memory files


LINT_PARAMS = [
    {},
    {"IN": 8, "OUT": 4, "SIMD": 8, "PE": 4, "A_SIGNED": 1, "SHIFT": 0, "OUT_SIGNED": 1, "OUT_MIN": -8, "OUT_MAX": 7},
    {"IN": 5, "OUT": 3, "SIMD": 1, "PE": 1, "SHIFT": -3, "OUT_W": 8, "OUT_MAX": 255},
    {"IN": 64, "OUT": 16, "SIMD": 8, "PE": 4, "B_W": 16, "SHIFT": 40},
    {"IN": 1, "OUT": 1, "SIMD": 1, "PE": 1, "WEIGHT_FILE": '"w.mem"', "BIAS_FILE": '"b.mem"'},
]


@pytest.mark.parametrize("params", LINT_PARAMS, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()) or "default")
def test_mvu_lint(vl_env, params):
    lint("mvu", params)


def test_mvu_yosys(tmp_path):
    if shutil.which("yosys") is None:
        pytest.skip("yosys not on PATH (Debian: apt-get install yosys)")
    case = MvuCase(16, 8, 4, 2, 4, False, 4, 10, 4, 4, False)
    weight, bias, _ = make_data(case, seed=7)
    write_weight_memory(tmp_path / "w.mem", weight, case.simd, case.pe, case.w_w)
    write_bias_memory(tmp_path / "b.mem", bias, case.pe, case.b_w)
    params = {"IN": 16, "OUT": 8, "SIMD": 4, "PE": 2, "A_W": 4, "W_W": 4, "B_W": 10, "SHIFT": 4, "OUT_W": 4,
              "OUT_MIN": 0, "OUT_MAX": 15, "TAG_W": TAG_W}
    chparam = " ".join(f"-set {k} {v}" for k, v in params.items())
    reads = "; ".join(f"read_verilog -sv {s}" for s in sources("mvu"))
    script = (f"{reads}; chparam {chparam} -set WEIGHT_FILE \"{tmp_path / 'w.mem'}\" "
              f"-set BIAS_FILE \"{tmp_path / 'b.mem'}\" mvu; synth_xilinx -family xc7 -top mvu -flatten -noiopad; "
              f"tee -o {tmp_path / 'stat.json'} stat -json")
    run = subprocess.run(["yosys", "-q", "-p", script], check=False, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    cells = json.loads((tmp_path / "stat.json").read_text())["modules"]["\\mvu"]["num_cells_by_type"]
    luts = sum(n for cell, n in cells.items() if cell.startswith("LUT"))
    ffs = sum(n for cell, n in cells.items() if cell.startswith("FD"))
    assert luts > 0 and ffs > 0, cells


def test_acc_width_never_overflows():
    # worst case |acc| for IN products at the extremes plus the extreme bias must fit ACC_W signed
    for n_in, a_w, a_signed, w_w, b_w, simd in [(64, 4, False, 4, 12, 8), (1, 2, True, 2, 2, 1), (784, 8, True, 8, 30, 16)]:
        alo, ahi = int_range(a_w, a_signed)
        worst = n_in * max(abs(alo), ahi) * (1 << (w_w - 1)) + (1 << (b_w - 1))
        assert worst <= (1 << (acc_width(n_in, a_w, w_w, b_w, simd) - 1)) - 1


def test_memory_layout(tmp_path):
    weight = np.arange(24).reshape(4, 6) - 12  # (OUT=4, IN=6)
    write_weight_memory(tmp_path / "w.mem", weight, simd=3, pe=2, w_w=6)
    words = [int(line, 16) for line in (tmp_path / "w.mem").read_text().split()]
    assert len(words) == (4 // 2) * (6 // 3)
    for f_out in range(2):
        for f_in in range(2):
            for p in range(2):
                for s in range(3):
                    lane = (words[f_out * 2 + f_in] >> ((p * 3 + s) * 6)) & 63
                    lane -= 64 if lane >= 32 else 0
                    assert lane == weight[f_out * 2 + p, f_in * 3 + s]
    write_bias_memory(tmp_path / "b.mem", np.array([-1, 2, 3, -4]), pe=2, b_w=5)
    bwords = [int(line, 16) for line in (tmp_path / "b.mem").read_text().split()]
    assert unpack_rows(bwords, 2, 5, True).tolist() == [[-1, 2], [3, -4]]


@pytest.mark.parametrize("call, match", [
    (lambda p: write_weight_memory(p, np.zeros((4, 6), np.int64), 4, 2, 4), "SIMD=4 does not divide 6"),
    (lambda p: write_weight_memory(p, np.zeros((4, 6), np.int64), 3, 3, 4), "PE=3 does not divide 4"),
    (lambda p: write_weight_memory(p, np.full((4, 6), 8, np.int64), 3, 2, 4), "do not fit 4-bit"),
    (lambda p: write_bias_memory(p, np.array([-17, 0]), 2, 5), "do not fit 5-bit"),
    (lambda p: write_weight_memory(p, np.zeros((4, 6)), 3, 2, 4), "integer array"),
])
def test_memory_refusals(tmp_path, call, match):
    with pytest.raises(EehwError, match=match) as info:
        call(tmp_path / "m.mem")
    assert "\n" not in str(info.value)
