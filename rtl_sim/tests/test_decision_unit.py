"""decision_unit (rtl_sim/hdl/decision_unit.v) against eehw.policy.policies, bit for bit.

Each case builds the unit with Verilator through cocotb's runner (one build folder per case,
under tmp_path) and runs cocotb_decision_unit.py: directed ties, all-equal rows, saturated
extremes and threshold edges, then random rows, under random valid gaps and m_tready
backpressure, every output compared with margin_score / pow2_softmax_sum / np.argmax. The unit
is also linted with `verilator --lint-only -Wall` for every case's parameters.
"""

import json
import shutil
from pathlib import Path

import pytest
from hdl_tools import build_and_run, lint

from eehw.policy.policies import pow2_sum_bits
from eehw.rtl_sim.models.decision_vectors import CASES as VECTOR_CASES

TOP = "decision_unit"
POLICIES = {"margin": 0, "pow2": 1}


def unit_params(
    policy: str, n: int, w: int, shift: int = 0, frac_bits: int = 8, tag_w: int = 8, serial: int = 0
) -> dict:
    """HDL parameters; THR_W as eehw/hw/rtl/design.py's DecisionFormat sizes it (the confidence width)."""
    thr_w = w + 1 if policy == "margin" else pow2_sum_bits(n, frac_bits)
    return {
        "N_CLASSES": n,
        "LOGIT_W": w,
        "POLICY": POLICIES[policy],
        "SHIFT": shift,
        "FRAC_BITS": frac_bits,
        "THR_W": thr_w,
        "TAG_W": tag_w,
        "SERIAL": serial,
    }


def scan(params: dict) -> int:
    """The serial unit's cycles a sample, as documented in decision_unit.v."""
    return params["N_CLASSES"] * (1 if params["POLICY"] == 0 else 2)


def latency(params: dict) -> int:
    """Cycles from s_tvalid on an idle unit to m_tvalid, as documented in decision_unit.v."""
    if params["SERIAL"]:
        return scan(params) + 1
    return (params["N_CLASSES"] - 1).bit_length() + (1 if params["POLICY"] == 0 else 3)


def ii(params: dict) -> int:
    return scan(params) if params["SERIAL"] else 1


def simulate(params: dict, cfg: dict, build_dir: Path) -> dict:
    stats = build_dir / "stats.json"
    full = {**params, **cfg, "LATENCY": latency(params), "II": ii(params), "stats": str(stats)}
    build_and_run(TOP, params, build_dir, {"DU_CFG": json.dumps(full)})
    return json.loads(stats.read_text())


CASES = [
    pytest.param("margin", 10, 16, 0, 100_000, 0, id="margin-10x16", marks=pytest.mark.slow),
    pytest.param("pow2", 10, 16, 3, 100_000, 0, id="pow2-10x16", marks=pytest.mark.slow),
    pytest.param("margin", 10, 16, 0, 30_000, 1, id="serial-margin-10x16", marks=pytest.mark.slow),
    pytest.param("pow2", 10, 16, 3, 20_000, 1, id="serial-pow2-10x16", marks=pytest.mark.slow),
    pytest.param("margin", 3, 8, 0, 3_000, 0, id="margin-3x8"),
    pytest.param("pow2", 3, 8, 1, 3_000, 0, id="pow2-3x8"),
    pytest.param("margin", 3, 8, 0, 3_000, 1, id="serial-margin-3x8"),
    pytest.param("pow2", 2, 5, 1, 3_000, 1, id="serial-pow2-2x5"),
]


@pytest.mark.parametrize("policy, n, w, shift, random_rows, serial", CASES)
def test_decision_unit(vl_env, tmp_path, policy, n, w, shift, random_rows, serial):
    params = unit_params(policy, n, w, shift=shift, serial=serial)
    lint(TOP, params)
    cfg = {
        "seed": n * 1000 + w + shift,
        "random_rows": random_rows,
        "random_slices": 8,
        "burst_rows": 1000,
        "gap_p": 0.2,
        "stall_p": 0.2,
    }
    stats = simulate(params, cfg, tmp_path / "sim")
    assert stats["vectors"] >= random_rows
    assert stats["latency"] == latency(params)
    assert stats["ii"] == ii(params)
    print(f"\n{policy} {n}x{w}: {stats}")


@pytest.mark.parametrize("serial", [0, 1], ids=["pipeline", "serial"])
@pytest.mark.parametrize("index", range(len(VECTOR_CASES)), ids=["-".join(map(str, c)) for c in VECTOR_CASES])
def test_shared_vectors(vl_env, tmp_path, decision_vectors, index, serial):
    """The shared decision-unit vector file (rtl_sim/models/decision_vectors.py), the same rows the
    HLS header and the HLS top's decision IPs are checked with, through both architectures."""
    policy, n, w, shift, frac = VECTOR_CASES[index]
    params = unit_params(
        "pow2" if policy == "max_softmax_pow2" else "margin", n, w, shift=shift, frac_bits=frac, serial=serial
    )
    cfg = {"vectors": str(decision_vectors), "case": index, "seed": index, "gap_p": 0.3, "stall_p": 0.3}
    stats = simulate(params, cfg, tmp_path / "sim")
    assert stats["vectors"] > 1000 and stats["groups"] >= 8


def test_lint_other_widths(vl_env):
    """Parameter corners that are not simulated: 2 and 16 classes, a narrow threshold."""
    for serial in (0, 1):
        for params in (
            unit_params("margin", 2, 4, serial=serial),
            unit_params("pow2", 16, 12, shift=5, frac_bits=4, serial=serial),
            {**unit_params("margin", 10, 16, serial=serial), "THR_W": 8},
        ):
            lint(TOP, params)
    assert shutil.which("verilator")
