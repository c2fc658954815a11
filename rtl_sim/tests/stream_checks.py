"""Stream checks the unit testbenches share (mvu, requant, dwc): a unit streamed in phases (back
to back, one unit at a time, random gaps and backpressure) through cocotb, every output beat's
data, tag and tlast compared with a reference, and the stated timing checked; plus the numpy
reference of requantisation, independent of the RTL and of eehw.model.golden."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from axis_tb import unpack_rows
from hdl_tools import build_and_run

TAG_W = 8

PHASES = [  # name, input gap probability, m_tready-low probability, one unit at a time
    ("back_to_back", 0.0, 0.0, False),
    ("isolated", 0.0, 0.0, True),
    ("random", 0.4, 0.5, False),
    ("random_light", 0.1, 0.2, False),
    ("bursty_input", 0.7, 0.0, False),
    ("heavy_backpressure", 0.0, 0.9, False),
]


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def requant_reference(acc: np.ndarray, shift: int, lo: int, hi: int) -> np.ndarray:
    """clamp(round_half_even(acc * 2^-shift)): exact in float64 for |acc| < 2^53."""
    acc = np.asarray(acc, dtype=np.int64)
    assert np.abs(acc).max(initial=0) < 2**50
    return np.clip(np.rint(acc.astype(np.float64) * 2.0 ** (-shift)), lo, hi).astype(np.int64)


def mvu_timing(n_in: int, n_out: int, simd: int, pe: int) -> tuple[int, int, int]:
    """mvu.v header: (II, first-beat latency, last-beat latency)."""
    sf, nf = n_in // simd, n_out // pe
    l_last = 4 + (sf * nf if nf > 1 else 0)
    return sf * nf, sf - 1 + l_last, l_last


# --------------------------------------------------------------------------- generic stream runner


def run_stream(
    top: str,
    srcs: list[Path],
    params: dict,
    beats: list[tuple[int, int, int]],
    unit_in: int,
    unit_out: int,
    tmp_path: Path,
    max_cycles: int,
    phases=PHASES,
    test_module: str | None = None,
) -> dict[str, dict]:
    """Build ``top`` with ``params`` and stream ``beats`` (tdata, tuser, tlast) through it in every
    phase; per phase the npz contents (data, tag, last, in_cycle, out_cycle)."""
    runs = [
        {
            "name": name,
            "gap_p": gap,
            "stall_p": stall,
            "one_at_a_time": one,
            "seed": k,
            "output": str(tmp_path / f"{name}.npz"),
        }
        for k, (name, gap, stall, one) in enumerate(phases)
    ]
    cfg = {
        "beats": [[str(d), int(t), int(last)] for d, t, last in beats],
        "unit_in": unit_in,
        "unit_out": unit_out,
        "phases": runs,
        "max_cycles": max_cycles,
    }
    cfg_path = tmp_path / "stream.json"
    cfg_path.write_text(json.dumps(cfg))
    build_and_run(
        top,
        params,
        tmp_path / "sim_build",
        {"EEHW_STREAM_CFG": str(cfg_path)},
        srcs=srcs,
        test_module=test_module or f"cocotb_{top}",
    )
    out = {}
    for run in runs:
        with np.load(run["output"]) as f:
            out[run["name"]] = {k: f[k] for k in f.files}
    return out


def check_beats(
    results: dict[str, dict], expected: np.ndarray, tags: list[int], lasts: list[int], width: int, signed: bool
) -> None:
    """Every phase: output beat j holds expected[j] (elements of ``width`` bits), tag and tlast."""
    for name, res in results.items():
        assert res["tag"].tolist() == list(tags), f"{name}: tags out of order, lost or duplicated"
        assert res["last"].tolist() == list(lasts), f"{name}: tlast on the wrong beats"
        got = unpack_rows(res["data"], expected.shape[1], width, signed)
        bad = np.argwhere(got != expected)
        assert not len(bad), (
            f"{name}: {len(bad)} wrong elements, first beat {bad[0][0]} element "
            f"{bad[0][1]}: got {got[tuple(bad[0])]}, expected {expected[tuple(bad[0])]}"
        )


def check_unit_timing(
    results: dict[str, dict],
    unit_in: int,
    unit_out: int,
    period: int,
    l_first: int,
    l_last: int,
    l_first_out: int | None = None,
) -> None:
    """Back to back: the first unit's latencies and the output spacing; isolated: every unit's
    latencies. A unit is unit_in input beats giving unit_out output beats. l_first: the unit's
    first input beat -> its last output beat; l_last: last input beat -> last output beat;
    l_first_out (if given): first input beat -> first output beat; period: cycles between the
    units' last output beats."""
    for name in ("back_to_back", "isolated"):
        res = results[name]
        first_in = res["in_cycle"][::unit_in]
        last_in = res["in_cycle"][unit_in - 1 :: unit_in]
        first_out = res["out_cycle"][::unit_out]
        last_out = res["out_cycle"][unit_out - 1 :: unit_out]
        n = len(last_out) if name == "isolated" else 1
        lats = {
            "last-beat": ((last_out - last_in)[:n], l_last),
            "first-beat": ((last_out - first_in)[:n], l_first),
            "first-output": ((first_out - first_in)[:n], l_first_out),
        }
        for what, (got, want) in lats.items():
            if want is not None:
                assert set(got.tolist()) == {want}, (
                    f"{name}: {what} latencies {sorted(set(got.tolist()))}, expected {want}"
                )
    gaps = np.diff(results["back_to_back"]["out_cycle"][unit_out - 1 :: unit_out]).tolist()
    assert set(gaps) == {period}, f"back-to-back unit spacing {sorted(set(gaps))}, expected {period}"
