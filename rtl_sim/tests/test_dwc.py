"""dwc.v (stream width converter) against a numpy reshape of the element stream.

A sample is N elements: N/IN_N input beats in, N/OUT_N output beats out, element order kept,
tlast on each sample's last beat, one tag per sample. Driven by cocotb_mvu.stream (via
cocotb_dwc) with random input gaps and random m_tready backpressure (several mixes); the
back-to-back and one-unit-at-a-time phases check the header's latencies and rates. Lint of every
case; `python rtl_sim/tests/test_dwc.py` prints the resource table of the dwc.v header.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from axis_tb import pack
from hdl_tools import lint, synth_stats
from stream_checks import TAG_W, check_beats, check_unit_timing, run_stream

CASES = {  # IN_N, OUT_N, E, N, samples
    "split3_odd": (6, 2, 5, 12, 12),
    "split_to_1": (4, 1, 3, 8, 10),
    "gather4": (2, 8, 4, 16, 12),
    "gather3_from_1": (1, 3, 6, 6, 16),
    "equal": (4, 4, 4, 8, 12),
}


def dwc_timing(in_n: int, out_n: int) -> dict:
    """dwc.v header: unit sizes, rate and latencies (first output, unit's last output)."""
    if in_n > out_n:  # split: 1 input beat -> R output beats
        r = in_n // out_n
        return {"unit_in": 1, "unit_out": r, "period": r, "l_first": r, "l_last": r, "l_first_out": 1}
    r = out_n // in_n  # gather: R input beats -> 1 output beat; equal: a wire
    lat = 1 if r > 1 else 0
    return {"unit_in": r, "unit_out": 1, "period": r, "l_first": r - 1 + lat, "l_last": lat, "l_first_out": r - 1 + lat}


@pytest.mark.parametrize("name", list(CASES))
def test_dwc(vl_env, tmp_path, name):
    in_n, out_n, e, n, samples = CASES[name]
    params = {"IN_N": in_n, "OUT_N": out_n, "E": e, "N": n, "TAG_W": TAG_W}
    lint("dwc", params)
    rng = np.random.default_rng(sorted(CASES).index(name))
    elems = rng.integers(0, 1 << e, (samples, n))
    tags = [int(t) for t in rng.integers(0, 1 << TAG_W, samples)]
    beats = []
    for s in range(samples):
        rows = elems[s].reshape(n // in_n, in_n)
        beats += [(pack(row, e), tags[s], int(j == len(rows) - 1)) for j, row in enumerate(rows)]
    expected = elems.reshape(-1, out_n)
    per = n // out_n
    out_tags = [tags[j // per] for j in range(len(expected))]
    out_lasts = [int(j % per == per - 1) for j in range(len(expected))]
    t = dwc_timing(in_n, out_n)
    results = run_stream(
        "dwc",
        [Path(__file__).resolve().parents[1] / "hdl" / "dwc.v"],
        params,
        beats,
        t["unit_in"],
        t["unit_out"],
        tmp_path,
        max_cycles=50_000,
    )
    check_beats(results, expected, out_tags, out_lasts, e, False)
    check_unit_timing(results, t["unit_in"], t["unit_out"], t["period"], t["l_first"], t["l_last"], t["l_first_out"])
    # back to back: the narrow side moves a beat every cycle, so a sample takes N / min(IN_N, OUT_N) cycles
    b2b = results["back_to_back"]
    narrow = b2b["out_cycle"] if out_n <= in_n else b2b["in_cycle"]
    assert set(np.diff(narrow).tolist()) == {1}, "the narrow side is not busy every cycle"


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"IN_N": 2, "OUT_N": 8},
        {"IN_N": 4, "OUT_N": 4},
        {"IN_N": 6, "OUT_N": 2, "N": 12},
        {"IN_N": 2, "OUT_N": 6, "N": 12},
        {"IN_N": 3, "OUT_N": 1, "N": 6},
        {"IN_N": 1, "OUT_N": 3, "N": 3},
    ],
    ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()) or "default",
)
def test_dwc_lint(vl_env, params):
    lint("dwc", params)


@pytest.mark.parametrize("params", [{"IN_N": 3, "OUT_N": 2, "N": 6}, {"IN_N": 8, "OUT_N": 2, "N": 12}])
def test_dwc_bad_widths_refused(vl_env, params):
    with pytest.raises(AssertionError, match="must_divide"):
        lint("dwc", params)


RESOURCE_POINTS = [(8, 2, 16), (32, 4, 32), (64, 16, 64), (2, 8, 16), (4, 32, 32), (16, 64, 64)]


def dwc_resources(work: Path, e: int = 4) -> list[tuple]:
    out = []
    for in_n, out_n, n in RESOURCE_POINTS:
        counts, _ = synth_stats(
            "dwc", {"IN_N": in_n, "OUT_N": out_n, "E": e, "N": n, "TAG_W": TAG_W}, work / f"dwc_{in_n}_{out_n}"
        )
        out.append(((in_n, out_n), counts))
    return out


if __name__ == "__main__":  # the resource table of the dwc.v header
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print("  IN_N -> OUT_N   LUT    FF  BRAM18  LUTRAM")
        for (i, o), c in dwc_resources(Path(tmp)):
            print(f"  {i:4d} -> {o:<5d}  {c['LUT']:5d}  {c['FF']:4d}  {c['BRAM18']:6d}  {c['LUTRAM']:6d}")
        sys.exit(0)
