"""Stream plumbing of the early-exit top: axis_fifo, axis_fork, exit_gate, exit_merge.

Each module is simulated with Verilator through cocotb against a reference model (deques for
the FIFO and fork, rtl_sim/models/exit_{gate,merge}.py for the others) under constrained-random
valid gaps and tready backpressure (several mixes) plus a no-gap run that measures the header's
timing. axis_fifo, axis_fork and exit_gate move multi-beat samples (1..40 beats, tlast on the
last, one tag per sample); exit_merge moves single-beat decisions. Every parameter case is
linted with `verilator --lint-only -Wall`; the slow Yosys tests check that the FIFO memories map
to block RAM / LUTRAM / registers as RAM_STYLE says, and synthesise exit_gate + exit_merge.
`python rtl_sim/tests/test_stream_plumbing.py` prints the resource tables of the module headers.
"""

import json
from pathlib import Path

import pytest
from hdl_tools import build_and_run, lint, require_yosys, synth_stats, synth_xc7


def simulate(top: str, params: dict, cfg: dict, build_dir: Path) -> None:
    build_and_run(top, params, build_dir, {"PLUMB_CFG": json.dumps({**params, **cfg})})


MIXES = [[0.5, 0.5], [0.1, 0.7], [0.7, 0.1], [0.0, 0.3], [0.3, 0.0]]


def style(name: str) -> str:
    """A string parameter as Verilator's -G and Yosys's chparam take it."""
    return f'"{name}"'


# (DEPTH, W, RAM_STYLE): every storage style (auto at DEPTH 2 = registers, at 100 x 37 bits =
# block), the smallest block FIFO.
FIFO_CASES = [(2, 8, "auto"), (5, 37, "distributed"), (4, 10, "block"), (100, 30, "auto")]


@pytest.mark.parametrize("depth, width, ram_style", FIFO_CASES)
def test_axis_fifo(vl_env, tmp_path, depth, width, ram_style):
    params = {"W": width, "TAG_W": 6, "DEPTH": depth, "RAM_STYLE": style(ram_style)}
    simulate("axis_fifo", params, {"beats": 5000, "mixes": MIXES, "seed": depth}, tmp_path / "sim")


@pytest.mark.parametrize("width", [37])
def test_axis_fork(vl_env, tmp_path, width):
    params = {"W": width, "TAG_W": 5}
    mixes = [[0.5, 0.5, 0.5], [0.0, 0.7, 0.1], [0.1, 0.1, 0.7], [0.6, 0.0, 0.0], [0.0, 0.3, 0.3]]
    simulate("axis_fork", params, {"beats": 5000, "mixes": mixes, "seed": width}, tmp_path / "sim")


# DEPTH 2 (registers: samples stream through, decisions ahead), 45 (auto -> distributed),
# 100 (auto -> block RAM) with 8 queued decisions (LUTRAM), as the early-exit top builds it.
@pytest.mark.parametrize("depth, dec_depth", [(2, 2), (45, 2), (100, 8)])
def test_exit_gate(vl_env, tmp_path, depth, dec_depth):
    params = {"FEAT_W": 48, "DEC_W": 13, "TAG_W": 7, "DEPTH": depth, "DEC_DEPTH": dec_depth, "RAM_STYLE": style("auto")}
    # exit probability, feature gap, decision gap, m_feat stall, m_res stall
    mixes = [
        [0.5, 0.3, 0.3, 0.3, 0.3],
        [0.9, 0.1, 0.5, 0.0, 0.7],
        [0.1, 0.5, 0.1, 0.7, 0.0],
        [0.5, 0.0, 0.0, 0.5, 0.5],
        [0.3, 0.6, 0.6, 0.1, 0.1],
    ]
    simulate("exit_gate", params, {"beats": 5000, "mixes": mixes, "seed": depth}, tmp_path / "sim")


@pytest.mark.parametrize("k", [1, 3, 4])
def test_exit_merge(vl_env, tmp_path, k):
    params = {"K": k, "DEC_W": 11, "TAG_W": 6}
    mixes = [[0.5, 0.5], [0.1, 0.7], [0.8, 0.1], [0.0, 0.3], [0.3, 0.0]]
    simulate("exit_merge", params, {"beats": 4000, "mixes": mixes, "seed": k}, tmp_path / "sim")


LINT_CASES = [
    *[("axis_fifo", {"W": w, "TAG_W": 6, "DEPTH": d, "RAM_STYLE": style(r)}) for d, w, r in FIFO_CASES],
    ("axis_fifo", {"DEPTH": 16}),
    ("axis_fifo", {"DEPTH": 512, "W": 27}),
    ("axis_fifo", {"DEPTH": 2, "RAM_STYLE": style("block")}),
    ("axis_fifo", {"DEPTH": 3, "RAM_STYLE": style("block")}),
    ("axis_fifo", {"DEPTH": 64, "RAM_STYLE": style("distributed")}),
    ("axis_fifo", {"DEPTH": 7, "RAM_STYLE": style("registers")}),
    ("axis_fifo", {"DEPTH": 6, "W": 20, "RAM_STYLE": style("registers")}),
    ("axis_fork", {}),
    ("axis_fork", {"W": 37, "TAG_W": 5}),
    *[("exit_gate", {"FEAT_W": 48, "DEC_W": 13, "TAG_W": 7, "DEPTH": d}) for d in (2, 45, 100)],
    ("exit_gate", {"DEPTH": 9}),
    ("exit_gate", {"DEPTH": 600}),
    ("exit_gate", {"DEPTH": 40, "RAM_STYLE": style("block")}),
    ("exit_merge", {"K": 1}),
    ("exit_merge", {"K": 3}),
    ("exit_merge", {"K": 4}),
    ("exit_merge", {"K": 8}),
]


@pytest.mark.parametrize("top, params", LINT_CASES, ids=[f"{t}-{p}" for t, p in LINT_CASES])
def test_lint(vl_env, top, params):
    lint(top, params)


@pytest.mark.slow
def test_yosys_synth_xc7(tmp_path):
    require_yosys()
    runs = {
        "exit_gate": ("exit_gate", {"FEAT_W": 160, "DEC_W": 16, "TAG_W": 8, "DEPTH": 16}),
        "exit_merge": ("exit_merge", {"K": 4, "DEC_W": 16, "TAG_W": 8}),
    }
    synth_xc7(runs, tmp_path)


# Resource points of the stream plumbing: name -> (top, params). The axis_fifo points have
# W + TAG_W + 1 = the beat width in their name.
RESOURCE_POINTS = {
    "fifo 2x32 auto(registers)": ("axis_fifo", {"W": 23, "TAG_W": 8, "DEPTH": 2, "RAM_STYLE": style("auto")}),
    "fifo 16x16 auto(distributed)": ("axis_fifo", {"W": 7, "TAG_W": 8, "DEPTH": 16, "RAM_STYLE": style("auto")}),
    "fifo 64x32 distributed": ("axis_fifo", {"W": 23, "TAG_W": 8, "DEPTH": 64, "RAM_STYLE": style("distributed")}),
    "fifo 64x32 registers": ("axis_fifo", {"W": 23, "TAG_W": 8, "DEPTH": 64, "RAM_STYLE": style("registers")}),
    "fifo 512x36 auto(block)": ("axis_fifo", {"W": 27, "TAG_W": 8, "DEPTH": 512, "RAM_STYLE": style("auto")}),
    "fifo 512x36 block": ("axis_fifo", {"W": 27, "TAG_W": 8, "DEPTH": 512, "RAM_STYLE": style("block")}),
    "fifo 2048x36 auto(block)": ("axis_fifo", {"W": 27, "TAG_W": 8, "DEPTH": 2048, "RAM_STYLE": style("auto")}),
    "fork W=8": ("axis_fork", {"W": 8, "TAG_W": 8}),
    "fork W=64": ("axis_fork", {"W": 64, "TAG_W": 8}),
    "gate 32b x 64 (distributed)": ("exit_gate", {"FEAT_W": 32, "DEC_W": 16, "TAG_W": 8, "DEPTH": 64}),
    "gate 32b x 512 (block)": ("exit_gate", {"FEAT_W": 32, "DEC_W": 16, "TAG_W": 8, "DEPTH": 512}),
    "gate 128b x 256 (block)": ("exit_gate", {"FEAT_W": 128, "DEC_W": 16, "TAG_W": 8, "DEPTH": 256}),
}


def resource_table(work: Path, names=None) -> dict[str, tuple[dict, dict]]:
    """Yosys synth_xilinx of the named RESOURCE_POINTS (all by default), two at a time:
    name -> (counts LUT/FF/BRAM18/LUTRAM/..., raw cell counts)."""
    from concurrent.futures import ThreadPoolExecutor

    names = list(names or RESOURCE_POINTS)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            n: pool.submit(
                synth_stats, *RESOURCE_POINTS[n], work / n.replace(" ", "_").replace("(", "").replace(")", "")
            )
            for n in names
        }
        return {n: f.result() for n, f in futures.items()}


@pytest.mark.slow
def test_yosys_fifo_memories(tmp_path):
    """512 x 36 (auto and block) maps to block RAM with few flip-flops; 64 x 32 distributed
    maps to LUTRAM cells, not to ~2000 flip-flops; 2 x 32 auto stays in registers."""
    require_yosys()
    names = ["fifo 512x36 auto(block)", "fifo 512x36 block", "fifo 64x32 distributed", "fifo 2x32 auto(registers)"]
    table = resource_table(tmp_path, names)
    for name in names[:2]:
        counts, cells = table[name]
        assert counts["BRAM18"] >= 1, f"{name}: no block RAM: {cells}"
        assert counts["FF"] <= 150 and counts["LUTRAM"] == 0, f"{name}: {counts}"
    counts, cells = table["fifo 64x32 distributed"]
    lutram_cells = {c for c in cells if c.startswith("RAM32M") or c.startswith("RAM64")}
    assert lutram_cells and counts["LUTRAM"] > 0 and counts["BRAM18"] == 0, f"64x32 distributed: {cells}"
    assert counts["FF"] <= 120, f"64x32 distributed: {counts['FF']} FF"
    counts, cells = table["fifo 2x32 auto(registers)"]
    assert counts["LUTRAM"] == 0 and counts["BRAM18"] == 0 and counts["FF"] <= 80, f"2x32 auto: {cells}"


if __name__ == "__main__":
    # The resource tables of the module headers: python rtl_sim/tests/test_stream_plumbing.py
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, (counts, cells) in resource_table(Path(tmp)).items():
            mem = {c: n for c, n in cells.items() if c.startswith(("RAM", "SRL"))}
            print(
                f"{name:30s} LUT {counts['LUT']:5d}  FF {counts['FF']:5d}  BRAM18 {counts['BRAM18']:3d}  "
                f"LUTRAM {counts['LUTRAM']:4d}  {mem}"
            )
