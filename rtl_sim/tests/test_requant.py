"""requant.v (element-wise requantisation, 1-deep pipeline register) against a numpy reference.

Same driver and phases as test_mvu.py (cocotb_mvu.stream): samples of several beats with tlast
on the last one; every output beat's data, tag and tlast under random gaps and backpressure;
latency 1 and one beat per cycle on back-to-back and isolated input. The reference is
test_mvu.requant_reference (np.rint on the exact value), cross-checked against eehw.model.golden.Quant.
Inputs cover the whole input range plus hand-picked ties (x = (2k+1) * 2^(SHIFT-1)).
"""

from __future__ import annotations

import numpy as np
import pytest
from axis_tb import pack
from hdl_tools import HDL, lint
from stream_checks import TAG_W, check_beats, check_unit_timing, int_range, requant_reference, run_stream

from eehw.model.golden import Quant

SOURCES = [HDL / "round_shift_sat.v", HDL / "requant.v"]
REQUANT_II = 1
REQUANT_LATENCY = 1  # requant.v header (first- and last-beat); eehw.hw.plan.RequantStage.latency

CASES = {  # n, in_w, in_signed, shift, out_w, out_signed, narrow
    "signed_to_relu": (6, 12, True, 3, 4, False, False),
    "unsigned_leftshift_signed": (3, 6, False, -2, 8, True, False),
    "shift4_narrow": (2, 9, True, 4, 3, True, True),
}


def make_inputs(n: int, in_w: int, in_signed: bool, shift: int, beats: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo, hi = int_range(in_w, in_signed)
    x = rng.integers(lo, hi + 1, (beats, n))
    x[0, :], x[1, :], x[2, :] = lo, hi, 0
    if shift > 0:  # exact ties, odd and even floors, both signs
        k = rng.integers(-(1 << 20), 1 << 20, (beats // 2, n))
        ties = (2 * k + 1) * (1 << (shift - 1))
        ties = np.clip(ties, lo, hi)
        x[3 : 3 + len(ties)] = ties[: beats - 3]
    return x.astype(np.int64)


@pytest.mark.usefixtures("vl_env")
@pytest.mark.parametrize("name", list(CASES))
def test_requant(tmp_path, name):
    n, in_w, in_signed, shift, out_w, out_signed, narrow = CASES[name]
    seed = sorted(CASES).index(name)
    x = make_inputs(n, in_w, in_signed, shift, beats=80, seed=seed)
    out_min, out_max = int_range(out_w, out_signed, narrow)
    expected = requant_reference(x, shift, out_min, out_max)
    quant = Quant("q", in_exp=0, out_exp=shift, bits=out_w, signed=out_signed, narrow=narrow)
    assert np.array_equal(expected, quant(x)), "numpy reference and eehw.model.golden.Quant disagree"
    assert ((expected == out_min) | (expected == out_max)).any(), "no saturating input"
    # samples of 1..4 beats, tlast on each sample's last beat, one tag per sample
    rng = np.random.default_rng(seed + 100)
    lasts, tags, tag = [], [], 0
    while len(lasts) < len(x):
        size = min(int(rng.integers(1, 5)), len(x) - len(lasts))
        tag = int(rng.integers(0, 1 << TAG_W))
        lasts += [0] * (size - 1) + [1]
        tags += [tag] * size
    beats = [(pack(row, in_w), t, last) for row, t, last in zip(x, tags, lasts)]
    params = {
        "N": n,
        "IN_W": in_w,
        "IN_SIGNED": int(in_signed),
        "SHIFT": shift,
        "OUT_W": out_w,
        "OUT_SIGNED": int(out_signed),
        "OUT_MIN": out_min,
        "OUT_MAX": out_max,
        "TAG_W": TAG_W,
    }
    lint("requant", params, SOURCES)
    results = run_stream("requant", SOURCES, params, beats, 1, 1, tmp_path, max_cycles=20_000)
    check_beats(results, expected, tags, lasts, out_w, out_signed)
    check_unit_timing(results, 1, 1, REQUANT_II, REQUANT_LATENCY, REQUANT_LATENCY)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"IN_SIGNED": 0, "SHIFT": -3, "OUT_MIN": 0, "OUT_MAX": 255, "OUT_SIGNED": 0},
        {"SHIFT": 0, "N": 1},
        {"IN_W": 8, "SHIFT": 20},
    ],
    ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()) or "default",
)
@pytest.mark.usefixtures("vl_env")
def test_requant_lint(params):
    lint("requant", params, SOURCES)
