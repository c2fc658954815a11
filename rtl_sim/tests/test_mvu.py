"""mvu.v (streaming folded matrix-vector unit + requantisation) against a numpy reference.

The reference here is independent of the RTL and of eehw.model.golden: an integer matmul plus bias,
then x * 2^-SHIFT rounded half to even with np.rint on the exact float64 value (every value here
is far below 2^53), then a clip. Each configuration is built with Verilator through cocotb
(cocotb_mvu.stream) and streamed in several phases: back to back with no backpressure (checks
II and the first vector's first- and last-beat latency), one vector at a time (checks both
latencies on every vector), and random input gaps with random m_tready backpressure. A sample is
several vectors (a convolution's output positions) with s_tlast only on the last beat of its last
vector; every output beat's data, tag and tlast are checked. Also: `verilator --lint-only -Wall`
of every case, Yosys memory-mapping checks (slow) and the memory writer's layout and refusals.

`python rtl_sim/tests/test_mvu.py` prints the resource table of the mvu.v header.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from axis_tb import pack, unpack_rows
from hdl_tools import lint, require_yosys, sources, synth_stats
from stream_checks import TAG_W, check_beats, check_unit_timing, int_range, mvu_timing, requant_reference, run_stream

from eehw.errors import EehwError
from eehw.hw.rtl.weights import acc_width, write_bias_memory, write_weight_memory

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
    vectors: int = 3  # vectors (positions) per sample
    samples: int = 12
    w_style: str = "auto"
    in_style: str = "auto"
    saturates: bool = True  # the data reach both clamp limits

    def params(self, wfile: Path | None = None, bfile: Path | None = None) -> dict:
        lo, hi = int_range(self.out_w, self.out_signed, self.narrow)
        p = {
            "IN": self.n_in,
            "OUT": self.n_out,
            "SIMD": self.simd,
            "PE": self.pe,
            "A_W": self.a_w,
            "A_SIGNED": int(self.a_signed),
            "W_W": self.w_w,
            "B_W": self.b_w,
            "SHIFT": self.shift,
            "OUT_W": self.out_w,
            "OUT_SIGNED": int(self.out_signed),
            "OUT_MIN": lo,
            "OUT_MAX": hi,
            "TAG_W": TAG_W,
            "W_STYLE": f'"{self.w_style}"',
            "IN_STYLE": f'"{self.in_style}"',
        }
        if wfile is not None:
            p.update(WEIGHT_FILE=f'"{wfile}"', BIAS_FILE=f'"{bfile}"')
        return p


def random_case(seed: int) -> MvuCase:
    rng = np.random.default_rng(seed)
    n_in, n_out = int(rng.choice([6, 8, 9, 12])), int(rng.choice([2, 4, 6]))
    simd = int(rng.choice([d for d in range(1, n_in + 1) if n_in % d == 0]))
    pe = int(rng.choice([d for d in range(1, n_out + 1) if n_out % d == 0]))
    a_w, w_w = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    out_w = int(rng.integers(3, 9))
    return MvuCase(
        n_in,
        n_out,
        simd,
        pe,
        a_w,
        bool(rng.integers(2)),
        w_w,
        int(rng.integers(4, 12)),
        int(rng.integers(-2, 6)),
        out_w,
        bool(rng.integers(2)),
        vectors=int(rng.integers(1, 4)),
        w_style=str(rng.choice(["auto", "block", "distributed"])),
        in_style=str(rng.choice(["auto", "distributed", "registers"])),
        saturates=False,
    )


CASES = {
    # folded both ways (SF 4, NF 3), unsigned in, ReLU 4-bit out, ties at shift 3; BRAM-styled ROM
    "fold_relu": MvuCase(12, 6, 3, 2, 4, False, 4, 10, 3, 4, False, w_style="block", in_style="distributed"),
    # SIMD = IN, PE = OUT: one vector per cycle; signed in, shift 0, signed narrow out
    "parallel_signed": MvuCase(8, 4, 8, 4, 3, True, 3, 7, 0, 4, True, narrow=True, vectors=4, samples=12),
    # SIMD = PE = 1 (SF 5, NF 3: non-power-of-two banks), negative shift, signed 8-bit out
    "serial_leftshift": MvuCase(5, 3, 1, 1, 4, True, 5, 6, -2, 8, True, in_style="registers"),
    # SF = 1 with output folds (2-word input buffer), wide (DSP-sized) products, shift 9
    "sf1_wide_relu": MvuCase(16, 8, 16, 2, 8, False, 8, 18, 9, 8, False, w_style="distributed"),
    # NF = 1 with input folds (streamed, no buffer), shift 1 (half the values are ties)
    "nf1_shift1_signed": MvuCase(20, 4, 5, 4, 5, True, 4, 9, 1, 6, True, vectors=2),
    # a first convolution's shape: a 3x3x1 window of 8-bit pixels in one beat (SIMD 9, DSP-sized
    # products in 3 partial sums of 3)
    "first_conv_parts": MvuCase(9, 4, 9, 2, 8, False, 4, 10, 6, 4, False, vectors=4),
    "random_a": random_case(11),
    "random_b": random_case(42),
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
    x = rng.integers(alo, ahi + 1, (case.samples * case.vectors, case.n_in))
    x[0, :] = ahi  # worst-case accumulators
    x[1, :] = alo
    x[2, :] = 0
    return weight.astype(np.int64), bias.astype(np.int64), x.astype(np.int64)


def mvu_stream(case: MvuCase, x: np.ndarray, tags: list[int]):
    """Input beats of the vectors x (samples of case.vectors vectors each)."""
    sf = case.n_in // case.simd
    beats = []
    for v, row in enumerate(x):
        sample_last = v % case.vectors == case.vectors - 1
        for f in range(sf):
            chunk = row[f * case.simd : (f + 1) * case.simd]
            beats.append((pack(chunk, case.a_w), tags[v // case.vectors], int(sample_last and f == sf - 1)))
    return beats


@pytest.mark.parametrize("name", list(CASES))
def test_mvu(vl_env, tmp_path, name):
    case = CASES[name]
    weight, bias, x = make_data(case, seed=sorted(CASES).index(name))
    lo, hi = int_range(case.out_w, case.out_signed, case.narrow)
    expected = requant_reference(x @ weight.T + bias, case.shift, lo, hi)
    if case.saturates:  # the data must reach both clamp limits, or saturation is not tested
        assert expected.min() == lo and expected.max() == hi

    wfile, bfile = tmp_path / "w.mem", tmp_path / "b.mem"
    write_weight_memory(wfile, weight, case.simd, case.pe, case.w_w)
    write_bias_memory(bfile, bias, case.pe, case.b_w)
    params = case.params(wfile, bfile)
    lint("mvu", params)
    rng = np.random.default_rng(len(x))
    tags = [int(t) for t in rng.integers(0, 1 << TAG_W, case.samples)]
    beats = mvu_stream(case, x, tags)
    ii, l_first, l_last = mvu_timing(case.n_in, case.n_out, case.simd, case.pe)
    sf = case.n_in // case.simd
    results = run_stream(
        "mvu", sources("mvu"), params, beats, sf, 1, tmp_path, max_cycles=1000 + 40 * len(x) * (ii + l_last)
    )
    out_tags = [tags[v // case.vectors] for v in range(len(x))]
    out_lasts = [int(v % case.vectors == case.vectors - 1) for v in range(len(x))]
    check_beats(results, expected, out_tags, out_lasts, case.out_w, case.out_signed)
    check_unit_timing(results, sf, 1, ii, l_first, l_last)
    if case.n_out == case.pe:  # NF = 1: the input is never stalled with m_tready high
        assert set(np.diff(results["back_to_back"]["in_cycle"]).tolist()) == {1}


# --------------------------------------------------------------------------- lint


LINT_PARAMS = [
    {},
    {"IN": 8, "OUT": 4, "SIMD": 8, "PE": 4, "A_SIGNED": 1, "SHIFT": 0, "OUT_SIGNED": 1, "OUT_MIN": -8, "OUT_MAX": 7},
    {"IN": 5, "OUT": 3, "SIMD": 1, "PE": 1, "SHIFT": -3, "OUT_W": 8, "OUT_MAX": 255},
    {"IN": 64, "OUT": 16, "SIMD": 8, "PE": 4, "B_W": 16, "SHIFT": 40, "W_STYLE": '"block"', "IN_STYLE": '"block"'},
    {"IN": 64, "OUT": 16, "SIMD": 64, "PE": 2, "W_STYLE": '"distributed"', "IN_STYLE": '"registers"'},
    {"IN": 64, "OUT": 16, "SIMD": 4, "PE": 16, "W_STYLE": '"registers"', "IN_STYLE": '"distributed"'},
    {"IN": 1, "OUT": 1, "SIMD": 1, "PE": 1, "WEIGHT_FILE": '"w.mem"', "BIAS_FILE": '"b.mem"'},
    {"IN": 784, "OUT": 32, "SIMD": 16, "PE": 4, "W_STYLE": '"block"'},
]


@pytest.mark.parametrize("params", LINT_PARAMS, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()) or "default")
def test_mvu_lint(vl_env, params):
    lint("mvu", params)


def test_mvu_bad_style_refused(vl_env):
    with pytest.raises(AssertionError, match="must_be_auto_block_distributed_or_registers"):
        lint("mvu", {"W_STYLE": '"bram"'})


# --------------------------------------------------------------------------- Yosys: memories and resources


def synth_case(n_in, n_out, simd, pe, w_style, in_style, work: Path, a_w=4, w_w=4, b_w=10) -> tuple[dict, dict]:
    """synth_stats of an mvu with random weights written to ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n_in * 131 + n_out)
    weight = rng.integers(-(1 << (w_w - 1)), 1 << (w_w - 1), (n_out, n_in))
    bias = rng.integers(-(1 << (b_w - 1)), 1 << (b_w - 1), n_out)
    write_weight_memory(work / "w.mem", weight, simd, pe, w_w)
    write_bias_memory(work / "b.mem", bias, pe, b_w)
    case = MvuCase(n_in, n_out, simd, pe, a_w, False, w_w, b_w, 4, 4, False, w_style=w_style, in_style=in_style)
    return synth_stats("mvu", case.params(work / "w.mem", work / "b.mem"), work)


RESOURCE_POINTS = [  # IN, OUT, SIMD, PE, W_STYLE, IN_STYLE
    (72, 16, 1, 1, "auto", "auto"),
    (72, 16, 8, 2, "auto", "auto"),
    (72, 16, 72, 16, "auto", "auto"),
    (784, 32, 1, 1, "block", "auto"),
    (784, 32, 16, 4, "block", "auto"),
]


def mvu_resources(work: Path, points=RESOURCE_POINTS, jobs: int = 2) -> list[tuple]:
    """(point, counts, raw cells) of every point (Yosys, ``jobs`` at a time)."""

    def one(pt):
        counts, cells = synth_case(*pt, work / "_".join(map(str, pt)))
        return pt, counts, cells

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, points))


@pytest.mark.slow
def test_dsp_products_are_summed_within_the_clock(tmp_path):
    """A first convolution's MVU (3x3x1 window of 8-bit pixels in one beat, 8 PE): its 72
    products go to DSP48E1s, and the logic-only path through them and their sum stays under the
    share of the pynq-z2 period the flow warns at (a chain of post-adders cascaded 9 DSPs deep
    took 13.0 ns of the 10 ns)."""
    from eehw.board import load_board
    from eehw.hw.tools.fmax import LOGIC_SHARE_WARNING, critical_path

    case = MvuCase(9, 8, 9, 8, 8, False, 4, 10, 6, 4, False)
    rng = np.random.default_rng(9)
    write_weight_memory(tmp_path / "w.mem", rng.integers(-8, 8, (8, 9)), 9, 8, 4)
    write_bias_memory(tmp_path / "b.mem", rng.integers(-512, 512, 8), 8, 10)
    params = case.params(tmp_path / "w.mem", tmp_path / "b.mem")
    counts, _ = synth_stats("mvu", params, tmp_path / "stat")
    assert counts["DSP"] == 72
    wrapper = tmp_path / "mvu_top.v"  # the parameters as a top, for sta
    overrides = ", ".join(f".{k}({v})" for k, v in params.items())
    wrapper.write_text(
        "module mvu_top(input wire clk, input wire rst, input wire [71:0] s_tdata, input wire s_tvalid,\n"
        "  output wire s_tready, input wire [7:0] s_tuser, input wire s_tlast, output wire [31:0] m_tdata,\n"
        "  output wire m_tvalid, input wire m_tready, output wire [7:0] m_tuser, output wire m_tlast);\n"
        f"  mvu #({overrides}) u (.*);\nendmodule\n"
    )
    path = critical_path([*sources("mvu"), wrapper], "mvu_top")
    period = load_board("pynq-z2").clock_period_ns
    assert path["ns"] <= LOGIC_SHARE_WARNING * period, path


@pytest.mark.slow
def test_mvu_memory_styles(tmp_path):
    """W_STYLE block -> RAMB18E1, distributed -> no block RAM; the input buffer is LUTRAM, not
    IN*A_W flip-flops; LUTs grow with the lanes and the fixed part is small."""
    require_yosys()
    points = [
        (72, 16, 1, 1, "block", "distributed"),
        (72, 16, 1, 1, "distributed", "distributed"),
        (72, 16, 8, 2, "auto", "auto"),
    ]
    res = {pt: (counts, cells) for pt, counts, cells in mvu_resources(tmp_path, points)}
    block, block_cells = res[points[0]]
    dist, dist_cells = res[points[1]]
    assert block["BRAM18"] >= 1 and block_cells.get("RAMB18E1", 0) >= 1, block_cells
    assert dist["BRAM18"] == 0, dist_cells
    for counts, cells in res.values():
        assert counts["LUTRAM"] > 0, cells
        assert any(cells.get(c, 0) for c in ("RAM32M", "RAM64M", "RAM64X1D", "RAM32X1D", "RAM128X1D")), cells
        assert counts["DSP"] == 0, cells
    # the 72-element input buffer (2 x 72 x 4 bits) is not in flip-flops
    assert block["FF"] < 72 * 4 and dist["FF"] < 72 * 4, (block, dist)
    # 16 lanes cost more LUTs than 1, and the fixed part (1 lane) is small
    assert block["LUT"] < 300 and res[points[2]][0]["LUT"] > 2 * block["LUT"]


@pytest.mark.slow
def test_mvu_block_through_flow(tmp_path):
    """eehw.hw.tools.yosys.synthesize (the flow's script, which unsets rom_style) keeps W_STYLE = block."""
    require_yosys()
    from eehw.hw.tools.yosys import synthesize

    case = MvuCase(72, 16, 1, 1, 4, False, 4, 10, 4, 4, False, w_style="block", in_style="distributed")
    weight, bias, _ = make_data(case, seed=5)
    write_weight_memory(tmp_path / "w.mem", weight, 1, 1, 4)
    write_bias_memory(tmp_path / "b.mem", bias, 1, 10)
    p = case.params(tmp_path / "w.mem", tmp_path / "b.mem")
    ports = ", ".join(
        f".{n}({n})"
        for n in (
            "clk",
            "rst",
            "s_tdata",
            "s_tvalid",
            "s_tready",
            "s_tuser",
            "s_tlast",
            "m_tdata",
            "m_tvalid",
            "m_tready",
            "m_tuser",
            "m_tlast",
        )
    )
    wrap = tmp_path / "mvu_wrap.v"
    wrap.write_text(
        "module mvu_wrap (input wire clk, input wire rst, input wire [3:0] s_tdata, input wire s_tvalid,\n"
        "  output wire s_tready, input wire [7:0] s_tuser, input wire s_tlast, output wire [63:0] m_tdata,\n"
        "  output wire m_tvalid, input wire m_tready, output wire [7:0] m_tuser, output wire m_tlast);\n"
        f"  mvu #({', '.join(f'.{k}({v})' for k, v in p.items())}) u ({ports});\nendmodule\n"
    )
    result = synthesize(sources("mvu") + [wrap], "mvu_wrap")
    assert result.BRAM18 >= 1 and result.LUTRAM > 0, result


# --------------------------------------------------------------------------- memory files


def test_acc_width_never_overflows():
    # worst case |acc| for IN products at the extremes plus the extreme bias must fit ACC_W signed
    for n_in, a_w, a_signed, w_w, b_w, simd in [
        (64, 4, False, 4, 12, 8),
        (1, 2, True, 2, 2, 1),
        (784, 8, True, 8, 30, 16),
    ]:
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


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: write_weight_memory(p, np.zeros((4, 6), np.int64), 4, 2, 4), "SIMD=4 does not divide 6"),
        (lambda p: write_weight_memory(p, np.zeros((4, 6), np.int64), 3, 3, 4), "PE=3 does not divide 4"),
        (lambda p: write_weight_memory(p, np.full((4, 6), 8, np.int64), 3, 2, 4), "do not fit 4-bit"),
        (lambda p: write_bias_memory(p, np.array([-17, 0]), 2, 5), "do not fit 5-bit"),
        (lambda p: write_weight_memory(p, np.zeros((4, 6)), 3, 2, 4), "integer array"),
    ],
)
def test_memory_refusals(tmp_path, call, match):
    with pytest.raises(EehwError, match=match) as info:
        call(tmp_path / "m.mem")
    assert "\n" not in str(info.value)


if __name__ == "__main__":  # the resource table of the mvu.v header
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print("  IN  OUT  SIMD x PE  W_STYLE  II     LUT    FF   BRAM18  LUTRAM  DSP   cells")
        for (n_in, n_out, simd, pe, ws, ins), c, cells in mvu_resources(Path(tmp)):
            mem = {k: v for k, v in cells.items() if k.startswith(("RAM", "SRL"))}
            print(
                f"  {n_in:3d}  {n_out:3d}  {simd:3d} x {pe:<3d}  {ws:<7s} {(n_in // simd) * (n_out // pe):5d}  "
                f"{c['LUT']:6d}  {c['FF']:5d}  {c['BRAM18']:5d}  {c['LUTRAM']:6d}  {c['DSP']:3d}   {mem}"
            )
        sys.exit(0)
