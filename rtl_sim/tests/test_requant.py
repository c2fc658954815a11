"""requant.v (element-wise requantisation, 1-deep pipeline register) against eehw.golden.Quant.

Same driver and phases as test_mvu.py: every output and the tag order under random gaps and
backpressure; II = 1 and LATENCY = 1 on back-to-back and isolated input. Inputs cover the
whole input range plus hand-picked ties (x = (2k+1) * 2^(SHIFT-1)) for round half to even.
"""

from __future__ import annotations

import numpy as np
import pytest
from hdl_tools import HDL, lint
from test_mvu import TAG_W, check_outputs, check_timing, run_stream

from eehw.golden import Quant, int_range

SOURCES = [HDL / "round_shift_sat.v", HDL / "requant.v"]
REQUANT_II = 1
REQUANT_LATENCY = 1  # requant.v header; eehw.hwplan.RequantStage.latency

CASES = {  # n, in_w, in_signed, shift, out_w, out_signed, narrow
    "signed_to_relu": (6, 12, True, 3, 4, False, False),
    "unsigned_leftshift_signed": (3, 6, False, -2, 8, True, False),
    "shift4_narrow": (2, 9, True, 4, 3, True, True),
}


def make_inputs(n: int, in_w: int, in_signed: bool, shift: int, samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo, hi = int_range(in_w, in_signed)
    x = rng.integers(lo, hi + 1, (samples, n))
    x[0, :], x[1, :], x[2, :] = lo, hi, 0
    if shift > 0:  # exact ties, odd and even floors, both signs
        k = rng.integers(-(1 << 20), 1 << 20, (samples // 2, n))
        ties = (2 * k + 1) * (1 << (shift - 1))
        ties = np.clip(ties, lo, hi)
        x[3:3 + len(ties)] = ties[: samples - 3]
    return x.astype(np.int64)


@pytest.mark.usefixtures("vl_env")
@pytest.mark.parametrize("name", list(CASES))
def test_requant(tmp_path, name):
    n, in_w, in_signed, shift, out_w, out_signed, narrow = CASES[name]
    x = make_inputs(n, in_w, in_signed, shift, samples=60, seed=sorted(CASES).index(name))
    quant = Quant("q", in_exp=0, out_exp=shift, bits=out_w, signed=out_signed, narrow=narrow)
    expected = quant(x)
    out_min, out_max = int_range(out_w, out_signed, narrow)
    assert ((expected == out_min) | (expected == out_max)).any(), "no saturating input"
    params = {"N": n, "IN_W": in_w, "IN_SIGNED": int(in_signed), "SHIFT": shift, "OUT_W": out_w,
              "OUT_SIGNED": int(out_signed), "OUT_MIN": out_min, "OUT_MAX": out_max, "TAG_W": TAG_W}
    results = run_stream("requant", SOURCES, params, x, in_w, REQUANT_II, tmp_path)
    check_outputs(results, expected, out_w, out_signed)
    check_timing(results, REQUANT_II, REQUANT_LATENCY)


@pytest.mark.parametrize("params", [
    {},
    {"IN_SIGNED": 0, "SHIFT": -3, "OUT_MIN": 0, "OUT_MAX": 255, "OUT_SIGNED": 0},
    {"SHIFT": 0, "N": 1},
    {"IN_W": 8, "SHIFT": 20},
], ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()) or "default")
@pytest.mark.usefixtures("vl_env")
def test_requant_lint(params):
    lint("requant", params, SOURCES)
