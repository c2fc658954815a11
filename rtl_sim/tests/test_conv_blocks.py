"""Pixel-streaming convolution blocks: sliding_window (line-buffer im2col) and maxpool.

Both take a pixel stream (one beat per spatial position, C channels, tlast on the last, the tag
in tuser). Each parameter case is simulated with Verilator through cocotb (cocotb_conv_blocks.py
drives and checks the handshakes) against references built here with numpy alone:
- sliding_window: pad-then-slice im2col, split into KK*C/SIMD beats (the im2col itself is also
  checked against eehw.model.golden.Conv: windows x weights == the golden convolution);
- maxpool: reshape-and-max of the floor-cropped map, signed and unsigned;
under several mixes of random valid gaps and tready stalls, samples back to back with distinct
tags; one run without gaps/stalls measures first-beat latency, last-beat latency and cycles per
sample and asserts the header formulas (sw_timing / mp_timing below implement them).
Every case is also linted (`verilator --lint-only -Wall`). The slow Yosys test checks where the
memories go (LUTRAM / block RAM, not flip-flops) and measures the resource tables of the headers
(`python rtl_sim/tests/test_conv_blocks.py` prints them).

The simulations run two at a time (the Verilator builds dominate the time).
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from axis_tb import pack  # noqa: E402
from hdl_tools import HDL, build_and_run, lint, require_yosys, synth_stats  # noqa: E402

TAG_W = 6
MIXES = [[0.5, 0.5], [0.0, 0.6], [0.6, 0.0], [0.2, 0.3]]


def rand_elems(rng, shape, e: int, signed: bool) -> np.ndarray:
    lo, hi = (-(1 << (e - 1)), 1 << (e - 1)) if signed else (0, 1 << e)
    return rng.integers(lo, hi, size=shape, dtype=np.int64)


def tag_of(s: int) -> int:
    return (7 * s + 3) % (1 << TAG_W)  # consecutive samples have distinct tags


def simulate(top: str, params: dict, cfg: dict, build_dir: Path) -> dict:
    build_dir.mkdir(parents=True, exist_ok=True)
    cfg_file = build_dir / "cfg.json"
    cfg_file.write_text(json.dumps(cfg))
    vparams = {k: (f'"{v}"' if isinstance(v, str) else v) for k, v in params.items()}
    build_and_run(
        top,
        vparams,
        build_dir,
        {"CONV_CFG": str(cfg_file)},
        test_module="cocotb_conv_blocks",
        srcs=[HDL / f"{top}.v"],
        testcases=("stream",),
    )
    return json.loads((build_dir / "timing.json").read_text())


def run_cases(cases, tmp_path: Path, prepare):
    def one(idx_case):
        idx, case = idx_case
        top, params, cfg = prepare(case)
        timing = simulate(top, params, cfg, tmp_path / f"case{idx}")
        assert timing["first_latency"] == cfg["timing"]["first_latency"], (case, timing)
        return timing

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, enumerate(cases)))


def fold_beats(px: np.ndarray, e: int, tag: int, fold: int) -> list:
    """(P, C) pixels -> [data, tag, last] beats of C/fold channels, fold beats a pixel in
    channel order, last on the sample's last beat."""
    parts = px.reshape(len(px) * fold, -1)
    return [[pack(p, e), tag, int(i == len(parts) - 1)] for i, p in enumerate(parts)]


def pixel_beats(maps: np.ndarray, e: int) -> list:
    """(S, H, W, C) -> [data, tag, last] per pixel, row-major."""
    return [beat for s, m in enumerate(maps) for beat in fold_beats(m.reshape(-1, m.shape[-1]), e, tag_of(s), 1)]


# ---------------------------------------------------------------- sliding_window


def sw_geometry(dims, h, w, k, stride, pad):
    kh = k if dims == 2 else 1
    hp = h + 2 * pad if dims == 2 else 1
    wp = w + 2 * pad
    return kh, hp, wp, (hp - kh) // stride + 1, (wp - k) // stride + 1


def im2col(x: np.ndarray, dims, k, stride, pad) -> np.ndarray:
    """Independent reference: x (H, W, C) -> (P, KH*K*C), zero pad then slice, (kh, kw, c) order."""
    h, w, c = x.shape
    kh, _hp, _wp, out_h, out_w = sw_geometry(dims, h, w, k, stride, pad)
    ph = pad if dims == 2 else 0
    xp = np.pad(x, ((ph, ph), (pad, pad), (0, 0)))
    return np.array(
        [
            xp[oh * stride : oh * stride + kh, ow * stride : ow * stride + k, :].reshape(-1)
            for oh in range(out_h)
            for ow in range(out_w)
        ]
    )


def sw_timing(dims, c, h, w, k, stride, pad, simd) -> dict:
    """The sliding_window.v header formulas (t0 = 0)."""
    kh, hp, wp, out_h, out_w = sw_geometry(dims, h, w, k, stride, pad)
    nb = kh * k * c // simd
    wins = [(kh - 1 + oh * stride) * wp + k - 1 + ow * stride for oh in range(out_h) for ow in range(out_w)]
    gaps = [b - a for a, b in zip(wins, wins[1:])] + [hp * wp - wins[-1] + wins[0]]
    loads = [wins[0]]
    for d in gaps[:-1]:
        loads.append(loads[-1] + max(nb, d))

    def step_edge(s):
        if s <= wins[0]:
            return s
        j = max(i for i, ws in enumerate(wins) if ws <= s)
        return loads[j] + s - wins[j]

    ph = pad if dims == 2 else 0
    pix = [r * wp + x for r in range(ph, ph + h) for x in range(pad, pad + w)]
    last_in = step_edge(pix[-2]) + 1 if len(pix) >= 2 else 0
    per_sample = sum(max(nb, d) for d in gaps)
    closed = (
        out_h * (out_w - 1) * max(nb, stride)
        + (out_h - 1) * max(nb, stride * wp - (out_w - 1) * stride)
        + max(nb, hp * wp - (out_h - 1) * stride * wp - (out_w - 1) * stride)
    )
    assert closed == per_sample
    return {"first_latency": wins[0] + 1, "last_latency": loads[-1] + nb - last_in, "cycles_per_sample": per_sample}


SW_CASES = [
    # dims, C, H, W, K, stride, pad, E, SIMD, RAM_STYLE
    (2, 1, 28, 28, 3, 1, 1, 4, 9, "auto"),
    (2, 8, 14, 14, 3, 1, 1, 4, 8, "auto"),  # NB = 9: output-bound
    (2, 8, 14, 14, 3, 1, 1, 4, 72, "block"),  # NB = 1
    (1, 16, 1, 40, 5, 1, 2, 4, 80, "auto"),  # 1-D
    (2, 2, 8, 8, 3, 2, 0, 6, 3, "registers"),  # stride 2, NB = 6 > stride, last row/column dropped
    (2, 4, 5, 6, 1, 2, 1, 6, 2, "auto"),  # K = 1 (no line buffer) with padding, stride 2
    (2, 3, 6, 7, 2, 1, 0, 4, 1, "distributed"),  # SIMD = 1 (NB = 12), K = 2 (one line-buffer row)
]


def sw_params(case) -> dict:
    dims, c, h, w, k, stride, pad, e, simd, style = case
    return {
        "DIMS": dims,
        "C": c,
        "IN_H": h,
        "IN_W": w,
        "K": k,
        "STRIDE": stride,
        "PAD": pad,
        "E": e,
        "SIMD": simd,
        "RAM_STYLE": style,
        "TAG_W": TAG_W,
    }


def sw_prepare(case):
    dims, c, h, w, k, stride, pad, e, simd, _style = case
    rng = np.random.default_rng([dims, c, h, w, k, stride, pad, e, simd])
    kh, hp, wp, out_h, out_w = sw_geometry(dims, h, w, k, stride, pad)
    p, nb = out_h * out_w, kh * k * c // simd
    timing = sw_timing(dims, c, h, w, k, stride, pad, simd)
    b2b = 3 if timing["cycles_per_sample"] > 400 else 4
    samples = 1 + b2b + max(len(MIXES), min(24, 4000 // timing["cycles_per_sample"]))
    maps = rand_elems(rng, (samples, h, w, c), e, signed=True)
    outs = []
    for s in range(samples):
        wins = im2col(maps[s], dims, k, stride, pad)
        for q in range(p):
            for j in range(nb):
                outs.append([pack(wins[q, j * simd : (j + 1) * simd], e), tag_of(s), int(q == p - 1 and j == nb - 1)])
    cfg = {
        "seed": int(rng.integers(1 << 30)),
        "in_beats": pixel_beats(maps, e),
        "out_beats": outs,
        "in_per_sample": h * w,
        "out_per_sample": p * nb,
        "samples": samples,
        "b2b": b2b,
        "steps_per_sample": hp * wp + p * nb,
        "timing": timing,
        "mixes": MIXES,
    }
    return "sliding_window", sw_params(case), cfg


def test_im2col_reference_matches_golden_conv():
    """The numpy im2col times a weight matrix equals eehw.model.golden.Conv (channels-first)."""
    from eehw.model.golden import Conv

    for dims, c, h, w, k, stride, pad in [(2, 3, 7, 6, 3, 2, 1), (1, 4, 1, 11, 5, 1, 2), (2, 2, 5, 5, 1, 1, 0)]:
        rng = np.random.default_rng(k + h)
        maps = rand_elems(rng, (3, h, w, c), 5, signed=True)
        _kh, _hp, _wp, out_h, out_w = sw_geometry(dims, h, w, k, stride, pad)
        kernel = (k, k) if dims == 2 else (k,)
        weight = rng.integers(-8, 8, size=(5, c, *kernel), dtype=np.int64)
        bias = rng.integers(-50, 50, size=5, dtype=np.int64)
        conv = Conv(
            "conv", weight, bias, in_exp=0, weight_exp=0, weight_bits=4, stride=(stride,) * dims, padding=(pad,) * dims
        )
        x_cf = maps.transpose(0, 3, 1, 2) if dims == 2 else maps[:, 0].transpose(0, 2, 1)
        ref = conv(x_cf).reshape(3, 5, out_h * out_w).transpose(0, 2, 1)
        kk = int(np.prod(kernel))
        w_mat = weight.reshape(5, c, kk).transpose(0, 2, 1).reshape(5, kk * c)
        got = np.array([im2col(m, dims, k, stride, pad) for m in maps]) @ w_mat.T + bias
        np.testing.assert_array_equal(got, ref)


def test_sliding_window(vl_env, tmp_path):
    run_cases(SW_CASES, tmp_path, sw_prepare)


# ---------------------------------------------------------------- maxpool


def mp_timing(dims, h, w, k, fold=1) -> dict:
    """The maxpool.v header formulas (FOLD beats a pixel)."""
    kh = k if dims == 2 else 1
    out_h, out_w = (h // k if dims == 2 else 1), w // k
    n = h * w
    i_last = ((out_h * kh - 1) * w + out_w * k - 1) * fold + fold - 1
    return {
        "first_latency": ((kh - 1) * w + k - 1) * fold + 1,
        "last_latency": i_last - n * fold + 2,
        "cycles_per_sample": n * fold,
    }


def pool_ref(x: np.ndarray, dims, k) -> np.ndarray:
    """Independent reference: (H, W, C) -> (OUT_H, OUT_W, C), floor mode."""
    h, w, c = x.shape
    kh = k if dims == 2 else 1
    oh, ow = h // kh, w // k
    return x[: oh * kh, : ow * k].reshape(oh, kh, ow, k, c).max(axis=(1, 3))


MP_CASES = [
    # dims, C, H, W, K, E, signed, RAM_STYLE, FOLD
    (2, 8, 14, 14, 2, 4, 1, "auto", 1),
    (2, 4, 7, 9, 2, 5, 0, "block", 1),  # odd sizes: last row and column dropped
    (2, 3, 9, 7, 3, 4, 1, "registers", 1),  # K = 3, last column dropped
    (1, 16, 1, 21, 2, 4, 1, "auto", 1),  # 1-D odd
    (1, 4, 1, 11, 4, 6, 0, "distributed", 1),  # 1-D, 3 trailing pixels dropped
    # channel-folded (FOLD beats a pixel, C/FOLD channels a beat), as before a dense head
    (1, 32, 1, 10, 2, 4, 1, "auto", 4),  # mnist1d_cnn's head after block 2: 32 channels, 8 a beat
    (2, 8, 7, 9, 2, 4, 0, "auto", 2),  # 2-D, odd sizes: row memory of OUT_W * FOLD words
    (2, 6, 9, 7, 3, 5, 1, "registers", 3),  # FOLD 3 (not a power of two), K = 3
]


def mp_params(case) -> dict:
    dims, c, h, w, k, e, signed, style, fold = case
    return {
        "DIMS": dims,
        "C": c,
        "IN_H": h,
        "IN_W": w,
        "K": k,
        "E": e,
        "SIGNED": signed,
        "RAM_STYLE": style,
        "FOLD": fold,
        "TAG_W": TAG_W,
    }


def mp_prepare(case):
    dims, c, h, w, k, e, signed, _style, fold = case
    rng = np.random.default_rng([dims, c, h, w, k, e, signed, fold])
    timing = mp_timing(dims, h, w, k, fold)
    b2b = 4
    samples = 1 + b2b + max(len(MIXES), min(40, 3000 // (h * w * fold)))
    maps = rand_elems(rng, (samples, h, w, c), e, signed=bool(signed))
    ins, outs = [], []
    for s in range(samples):
        ins += fold_beats(maps[s].reshape(-1, c), e, tag_of(s), fold)
        outs += fold_beats(pool_ref(maps[s], dims, k).reshape(-1, c), e, tag_of(s), fold)
    cfg = {
        "seed": int(rng.integers(1 << 30)),
        "in_beats": ins,
        "out_beats": outs,
        "in_per_sample": h * w * fold,
        "out_per_sample": len(outs) // samples,
        "samples": samples,
        "b2b": b2b,
        "steps_per_sample": h * w * fold,
        "timing": timing,
        "mixes": MIXES,
    }
    return "maxpool", mp_params(case), cfg


def test_maxpool(vl_env, tmp_path):
    run_cases(MP_CASES, tmp_path, mp_prepare)


# ---------------------------------------------------------------- lint

LINT_CASES = (
    [("sliding_window", sw_params(c)) for c in SW_CASES]
    + [("maxpool", mp_params(c)) for c in MP_CASES]
    + [
        ("sliding_window", sw_params(c))
        for c in [
            (2, 8, 28, 28, 3, 1, 1, 4, 72, "block"),
            (2, 1, 9, 10, 4, 3, 0, 4, 4, "auto"),
            (1, 2, 1, 9, 3, 2, 1, 7, 3, "auto"),
            (2, 4, 5, 6, 1, 1, 0, 6, 4, "auto"),
            (2, 2, 6, 5, 3, 1, 1, 5, 1, "auto"),
        ]
    ]
    + [
        ("maxpool", mp_params(c))
        for c in [
            (2, 16, 28, 28, 2, 4, 1, "block", 1),
            (2, 2, 5, 5, 1, 4, 1, "auto", 1),
            (1, 1, 1, 5, 5, 3, 0, "auto", 1),
            (2, 16, 28, 28, 2, 4, 1, "auto", 8),
        ]
    ]
)


@pytest.mark.parametrize("top, params", LINT_CASES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(LINT_CASES)])
def test_lint(vl_env, top, params):
    lint(top, {k: (f'"{v}"' if isinstance(v, str) else v) for k, v in params.items()})


# ---------------------------------------------------------------- synthesis


def sw_synth(c=8, hw=28, k=3, e=4, simd=72, style="auto", pad=1, dims=2):
    return (
        "sliding_window",
        {
            "DIMS": dims,
            "C": c,
            "IN_H": hw if dims == 2 else 1,
            "IN_W": hw,
            "K": k,
            "STRIDE": 1,
            "PAD": pad,
            "E": e,
            "SIMD": simd,
            "RAM_STYLE": style,
            "TAG_W": 8,
        },
    )


def mp_synth(c=8, hw=28, k=2, e=4, style="auto", fold=1):
    return (
        "maxpool",
        {
            "DIMS": 2,
            "C": c,
            "IN_H": hw,
            "IN_W": hw,
            "K": k,
            "E": e,
            "SIGNED": 1,
            "RAM_STYLE": style,
            "FOLD": fold,
            "TAG_W": 8,
        },
    )


# name -> (top, params): the memory-mapping checks the slow test runs.
SYNTH_RUNS = {
    "sw_28x28x8_auto": sw_synth(),
    "sw_28x28x8_block": sw_synth(style="block"),
    "mp_28x28x8": mp_synth(),
    "sw_7x7x16": sw_synth(c=16, hw=7, simd=144),
    "sw_7x7x16_simd2": sw_synth(c=16, hw=7, simd=2),
    # 1-D, SIMD*E = 40 bits: a slice width that is not a power of two (mnist1d_cnn's blocks)
    "sw_1d_20x16": sw_synth(c=16, hw=20, k=5, pad=2, simd=80, dims=1),
    "sw_1d_20x16_simd10": sw_synth(c=16, hw=20, k=5, pad=2, simd=10, dims=1),
    # a pool of 16 channels, and channel-folded to 4 a beat (before a dense head that reads 4)
    "mp_14x14x16": mp_synth(c=16, hw=14),
    "mp_14x14x16_fold4": mp_synth(c=16, hw=14, fold=4),
}
# The rest of the headers' resource tables: `python rtl_sim/tests/test_conv_blocks.py` prints all
# (not in the test, for time).
TABLE_RUNS = {
    **SYNTH_RUNS,
    "sw_28x28x8_simd24": sw_synth(simd=24),
    "sw_28x28x8_simd8": sw_synth(simd=8),
    "sw_28x28x16": sw_synth(c=16, simd=144),
    "sw_14x14x8": sw_synth(hw=14),
    "mp_28x28x4": mp_synth(c=4),
    "mp_28x28x16": mp_synth(c=16),
    "mp_28x28x8_block": mp_synth(style="block"),
    "mp_28x28x8_fold2": mp_synth(fold=2),
}


def resource_table(work: Path, runs=SYNTH_RUNS) -> dict:
    """Yosys synth_xilinx of every run (two at a time): name -> (counts, raw cells)."""

    def one(item):
        name, (top, params) = item
        vparams = {k: (f'"{v}"' if isinstance(v, str) else v) for k, v in params.items()}
        return name, synth_stats(top, vparams, work / name)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, runs.items()))


def format_table(results: dict) -> str:
    lines = [f"{'case':22s} {'LUT':>6s} {'FF':>6s} {'BRAM18':>6s} {'LUTRAM':>6s}  cells"]
    for name, (counts, cells) in results.items():
        mem = {c: n for c, n in cells.items() if c.startswith(("RAM", "SRL"))}
        lines.append(
            f"{name:22s} {counts['LUT']:6d} {counts['FF']:6d} {counts['BRAM18']:6d} {counts['LUTRAM']:6d}  {mem}"
        )
    return "\n".join(lines)


@pytest.mark.slow
def test_yosys_memories_and_resources(tmp_path):
    require_yosys()
    results = resource_table(tmp_path)
    print(format_table(results))
    k, w, c, e = 3, 28, 8, 4
    lb_bits = (k - 1) * w * c * e
    counts, cells = results["sw_28x28x8_auto"]
    assert any(cells.get(t, 0) for t in ("RAM32M", "RAM64X1D", "RAM32X1D", "RAMB18E1")), cells
    assert counts["FF"] < lb_bits // 2, f"line buffer in flip-flops? FF {counts['FF']} vs {lb_bits} bits"
    counts, cells = results["sw_28x28x8_block"]
    assert counts["BRAM18"] >= 1, cells
    assert counts["FF"] < lb_bits // 2, counts
    counts, cells = results["mp_28x28x8"]
    assert counts["LUTRAM"] > 0 and counts["FF"] < (w // 2) * c * e, (counts, cells)
    # Folding the output (NB = 72 beats of SIMD = 2 per window) costs the NB:1 slice multiplexer,
    # at most NB/2 LUTs per output bit, over the one-beat window: not a load-or-shift per
    # window bit (the shift register it replaced cost 2,405 LUT here against 437).
    nb, simd = k * k * 16 // 2, 2
    extra = results["sw_7x7x16_simd2"][0]["LUT"] - results["sw_7x7x16"][0]["LUT"]
    assert extra <= simd * e * nb // 2, (extra, results["sw_7x7x16_simd2"])
    # The same bound when a slice is not a power of two bits wide (a part-select at beat*40
    # built a barrel shifter: 533 LUT more than the one-beat window at TAG_W 16; the bound is 160).
    nb, simd = 5 * 16 // 10, 10
    extra = results["sw_1d_20x16_simd10"][0]["LUT"] - results["sw_1d_20x16"][0]["LUT"]
    assert extra <= simd * e * nb // 2, (extra, results["sw_1d_20x16_simd10"])
    # The pool's comparators scale with the lanes: a quarter of the channels a beat costs at
    # most half the LUTs (running maxima and row memory in LUTRAM, not in flip-flops).
    full, folded = results["mp_14x14x16"][0], results["mp_14x14x16_fold4"]
    assert folded[0]["LUT"] <= full["LUT"] // 2 and folded[0]["LUTRAM"] > 0, (full, folded)
    assert folded[0]["FF"] < full["FF"] // 2, (full, folded)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(format_table(resource_table(Path(tmp), TABLE_RUNS)))
