"""Convolution building blocks: sliding_window, collect, maxpool (rtl_sim/hdl).

A convolution is sliding_window (whole map -> one receptive-field beat per output position)
-> mvu -> collect (position beats -> whole map) -> optional maxpool. Each block is simulated
with Verilator through cocotb (cocotb_conv_blocks.py drives and checks the handshakes) on
random channels-last maps under random valid gaps and tready backpressure; the expected beats
are built here:
- sliding_window: numpy pad-then-slice windows, and end to end: the RTL's windows times a random
  weight matrix must equal eehw.golden.Conv (channels-first) on the same maps;
- collect: concatenation of the position beats; a directed case checks `error`;
- maxpool: eehw.golden.MaxPool (channels-first), signed and unsigned.
Every module is also linted (`verilator --lint-only -Wall`) at two parameter sets and
synthesised once with yosys `synth_xilinx -family xc7`.

The simulations of one module run two at a time (the Verilator builds dominate the time).
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from axis_tb import pack, unpack
from hdl_tools import HDL, build_and_run, lint, synth_xc7

from eehw.golden import Conv, MaxPool

TAG_W = 6
MIXES = [[0.5, 0.5], [0.0, 0.6], [0.6, 0.0], [0.2, 0.3]]


def rand_elems(rng, shape, e: int, signed: bool) -> np.ndarray:
    lo, hi = (-(1 << (e - 1)), 1 << (e - 1)) if signed else (0, 1 << e)
    return rng.integers(lo, hi, size=shape, dtype=np.int64)


def simulate(top: str, params: dict, cfg: dict, build_dir: Path, testcases=("stream",)) -> dict:
    """Build ``top`` with ``params``, run the cocotb ``testcases``; return the received.json
    the stream test writes."""
    build_dir.mkdir(parents=True, exist_ok=True)
    cfg_file = build_dir / "cfg.json"
    cfg_file.write_text(json.dumps(cfg))
    build_and_run(top, params, build_dir, {"CONV_CFG": str(cfg_file)}, test_module="cocotb_conv_blocks",
                  srcs=[HDL / f"{top}.v"], testcases=tuple(testcases))
    return json.loads((build_dir / "received.json").read_text())


def run_cases(cases, tmp_path: Path, prepare, check, testcases=lambda case: ("stream",)):
    """Simulate every case, two at a time; ``prepare(case) -> (top, params, cfg, ctx)``."""
    def one(idx_case):
        idx, case = idx_case
        top, params, cfg, ctx = prepare(case)
        received = simulate(top, params, cfg, tmp_path / f"case{idx}", testcases(case))
        check(case, params, cfg, ctx, received)
        return idx

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, enumerate(cases)))


# ---------------------------------------------------------------- sliding_window

def sw_geometry(dims, c, h, w, k, stride, pad):
    hp = h + 2 * pad if dims == 2 else 1
    wp = w + 2 * pad
    kh = k if dims == 2 else 1
    out_h = (hp - kh) // stride + 1
    out_w = (wp - k) // stride + 1
    return kh, out_h, out_w


def sw_windows(x: np.ndarray, dims, k, stride, pad) -> np.ndarray:
    """Independent construction: x (H, W, C) channels-last -> (P, KH*K*C), pad then slice."""
    h, w, c = x.shape
    kh, out_h, out_w = sw_geometry(dims, c, h, w, k, stride, pad)
    ph = pad if dims == 2 else 0
    xp = np.zeros((h + 2 * ph, w + 2 * pad, c), dtype=np.int64)
    xp[ph:ph + h, pad:pad + w] = x
    rows = []
    for oh in range(out_h):
        for ow in range(out_w):
            rows.append(xp[oh * stride:oh * stride + kh, ow * stride:ow * stride + k, :].reshape(-1))
    return np.array(rows)


SW_CASES = [
    # dims, C, H, W, K, stride, pad, E
    (2, 1, 8, 8, 3, 1, 1, 8),
    (2, 3, 5, 4, 3, 2, 0, 5),
    (1, 16, 1, 20, 5, 1, 2, 4),
    (1, 2, 1, 9, 3, 2, 1, 7),
]


def test_sliding_window(vl_env, tmp_path):
    def prepare(case):
        dims, c, h, w, k, stride, pad, e = case
        rng = np.random.default_rng(list(case))
        kh, out_h, out_w = sw_geometry(dims, c, h, w, k, stride, pad)
        p = out_h * out_w
        samples = max(6, min(30, 600 // p))
        maps = rand_elems(rng, (samples, h, w, c), e, signed=True)
        ins, outs = [], []
        for s in range(samples):
            tag = (3 * s + 1) % (1 << TAG_W)
            ins.append([pack(maps[s], e), tag])
            for q, win in enumerate(sw_windows(maps[s], dims, k, stride, pad)):
                outs.append([pack(win, e), tag, int(q == p - 1)])
        params = {"DIMS": dims, "C": c, "IN_H": h, "IN_W": w, "K": k, "STRIDE": stride, "PAD": pad,
                  "E": e, "TAG_W": TAG_W}
        cfg = {"seed": int(rng.integers(1 << 30)), "in_beats": ins, "out_beats": outs,
               "in_per_sample": 1, "out_per_sample": p, "rate_samples": 3, "rate_side": "out",
               "latency": 2, "out_last": True, "mixes": MIXES}
        return "sliding_window", params, cfg, (maps, p, kh * k * c, rng)

    def check(case, params, cfg, ctx, received):
        dims, c, _h, _w, k, stride, pad, e = case
        maps, p, win_n, rng = ctx
        assert received["cycles_per_sample"] == p, f"{case}: {received['cycles_per_sample']} cycles/sample != P={p}"
        got = np.array([unpack(b[0], win_n, e, signed=True) for b in received["beats"]])
        got = got.reshape(len(maps), p, win_n)
        # End to end: windows x weights == golden Conv (channels-first, weight (OUT, C, *kernel)).
        n_out = 5
        kernel = (k, k) if dims == 2 else (k,)
        weight = rng.integers(-8, 8, size=(n_out, c, *kernel), dtype=np.int64)
        bias = rng.integers(-50, 50, size=n_out, dtype=np.int64)
        conv = Conv("conv", weight, bias, in_exp=0, weight_exp=0, weight_bits=4,
                    stride=(stride,) * dims, padding=(pad,) * dims)
        x_cf = maps.transpose(0, 3, 1, 2) if dims == 2 else maps[:, 0].transpose(0, 2, 1)
        ref = conv(x_cf)  # (N, OUT, *S)
        ref = ref.reshape(len(maps), n_out, p).transpose(0, 2, 1)  # (N, P, OUT), row-major positions
        kk = int(np.prod(kernel))
        w_mat = weight.reshape(n_out, c, kk).transpose(0, 2, 1).reshape(n_out, kk * c)  # [o, k*C + c]
        np.testing.assert_array_equal(got @ w_mat.T + bias, ref, err_msg=f"{case}: windows x W != golden Conv")

    run_cases(SW_CASES, tmp_path, prepare, check)


# ---------------------------------------------------------------- collect

COLLECT_CASES = [0, 1, "p1"]  # seeds for random (P, N, E); "p1": P = 1


def test_collect(vl_env, tmp_path):
    def prepare(case):
        rng = np.random.default_rng(100 + (7 if case == "p1" else case))
        p = 1 if case == "p1" else int(rng.integers(2, 10))
        n, e = int(rng.integers(1, 6)), int(rng.integers(3, 9))
        samples = max(8, 300 // p)
        data = rand_elems(rng, (samples, p, n), e, signed=False)
        ins, outs = [], []
        for s in range(samples):
            tag = (5 * s + 2) % (1 << TAG_W)
            for q in range(p):
                ins.append([pack(data[s, q], e), tag, int(q == p - 1)])
            outs.append([pack(data[s], e), tag])
        params = {"P": p, "N": n, "E": e, "TAG_W": TAG_W}
        cfg = {"seed": int(rng.integers(1 << 30)), "in_beats": ins, "out_beats": outs,
               "in_per_sample": p, "out_per_sample": 1, "rate_samples": 4, "rate_side": "in",
               "latency": 1, "in_last": True, "has_error": True, "mixes": MIXES, "P": p}
        return "collect", params, cfg, None

    def check(case, params, cfg, ctx, received):
        assert received["cycles_per_sample"] == params["P"], received["cycles_per_sample"]

    # The directed bad-tag / bad-tlast cases (error must rise) run on the P >= 2 builds.
    run_cases(COLLECT_CASES, tmp_path, prepare, check,
              testcases=lambda case: ("stream",) if case == "p1" else ("stream", "collect_errors"))


# ---------------------------------------------------------------- maxpool

MAXPOOL_CASES = [
    # dims, C, H, W, K, E, signed
    (d, c, h, w, k, e, signed)
    for d, c, h, w, k, e in [(2, 8, 8, 8, 2, 8), (2, 16, 4, 4, 2, 4), (1, 16, 1, 20, 2, 4), (1, 4, 1, 5, 4, 6)]
    for signed in (1, 0)
]


def test_maxpool(vl_env, tmp_path):
    def prepare(case):
        dims, c, h, w, k, e, signed = case
        rng = np.random.default_rng(list(case))
        samples = 60
        maps = rand_elems(rng, (samples, h, w, c), e, signed=bool(signed))
        pool = MaxPool("pool", kernel=(k,) * dims, stride=(k,) * dims)
        if dims == 2:
            ref = pool(maps.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)  # back to channels-last
        else:
            ref = pool(maps[:, 0].transpose(0, 2, 1)).transpose(0, 2, 1)
        ins = [[pack(maps[s], e), s % (1 << TAG_W)] for s in range(samples)]
        outs = [[pack(ref[s], e), s % (1 << TAG_W)] for s in range(samples)]
        params = {"DIMS": dims, "C": c, "IN_H": h, "IN_W": w, "K": k, "E": e, "SIGNED": signed,
                  "TAG_W": TAG_W}
        cfg = {"seed": int(rng.integers(1 << 30)), "in_beats": ins, "out_beats": outs,
               "in_per_sample": 1, "out_per_sample": 1, "rate_samples": 20, "rate_side": "out",
               "latency": 1, "mixes": MIXES}
        return "maxpool", params, cfg, None

    def check(case, params, cfg, ctx, received):
        assert received["cycles_per_sample"] == 1, received["cycles_per_sample"]

    run_cases(MAXPOOL_CASES, tmp_path, prepare, check)


# ---------------------------------------------------------------- lint and synthesis

LINT_CASES = [
    ("sliding_window", {"DIMS": 2, "C": 1, "IN_H": 8, "IN_W": 8, "K": 3, "STRIDE": 1, "PAD": 1, "E": 8}),
    ("sliding_window", {"DIMS": 1, "C": 16, "IN_H": 1, "IN_W": 20, "K": 5, "STRIDE": 1, "PAD": 2, "E": 4}),
    ("sliding_window", {"DIMS": 2, "C": 3, "IN_H": 5, "IN_W": 4, "K": 3, "STRIDE": 2, "PAD": 0, "E": 5}),
    ("collect", {"P": 64, "N": 16, "E": 8}),
    ("collect", {"P": 1, "N": 4, "E": 4}),
    ("collect", {"P": 2, "N": 3, "E": 5}),
    ("maxpool", {"DIMS": 2, "C": 8, "IN_H": 8, "IN_W": 8, "K": 2, "E": 8, "SIGNED": 1}),
    ("maxpool", {"DIMS": 1, "C": 4, "IN_H": 1, "IN_W": 5, "K": 4, "E": 6, "SIGNED": 0}),
]


@pytest.mark.parametrize("top, params", LINT_CASES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(LINT_CASES)])
def test_lint(vl_env, top, params):
    lint(top, params)


SYNTH_RUNS = {
    "sw_digits": ("sliding_window", {"DIMS": 2, "C": 1, "IN_H": 8, "IN_W": 8, "K": 3, "STRIDE": 1,
                                     "PAD": 1, "E": 8, "TAG_W": 8}),
    "sw_mnist1d": ("sliding_window", {"DIMS": 1, "C": 16, "IN_H": 1, "IN_W": 20, "K": 5, "STRIDE": 1,
                                      "PAD": 2, "E": 4, "TAG_W": 8}),
    "collect": ("collect", {"P": 20, "N": 16, "E": 4, "TAG_W": 8}),
    "maxpool": ("maxpool", {"DIMS": 1, "C": 16, "IN_H": 1, "IN_W": 20, "K": 2, "E": 4, "SIGNED": 1, "TAG_W": 8}),
}


def test_yosys_synth_xc7(tmp_path):
    if shutil.which("yosys") is None:
        pytest.skip("yosys not installed (Debian package `yosys` runs synth_xilinx)")
    synth_xc7(SYNTH_RUNS, tmp_path)
