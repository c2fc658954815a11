"""A hand-made DSE characterisation and exit configurations: no Yosys, every figure chosen here,
shared by the search and report tests."""

from types import SimpleNamespace

import numpy as np

from eehw.board import Board, Resources
from eehw.dse.characterise import Characterisation, UnitOption
from eehw.dse.exits import ExitConfig
from eehw.hw.plan import DecisionFormat
from eehw.hw.timing import single_beat
from eehw.policy.policies import PolicyName, PolicyParams

DEC_LUT, FINAL_DEC_LUT, MERGE_LUT, FORK_LUT, GATE_LUT = 700, 450, {1: 40, 2: 100, 3: 130}, 90, 200
# The serial decision unit, used after a head of 10 or more cycles a sample (one logit a cycle):
# 11 cycles instead of 5.
SERIAL_DEC_LUT, SERIAL_FINAL_DEC_LUT, SCAN = 80, 60, 10
QUEUE_LUT = 60  # the forward queue of one-beat samples: 8 beats


def hw_option(ii, out_bits=64):
    """A unit whose output is one beat a sample (so its timing is a plain latency)."""
    return SimpleNamespace(ii=ii, out_bits=out_bits, out_beats=1)


def unit_option(unit, ii, latency, lut, ff=10, lanes=1):
    return UnitOption(
        unit,
        lanes,
        {f"{unit}.fc": (lanes, 1)},
        ii,
        single_beat(latency),
        {"LUT": lut, "FF": ff, "DSP": 0, "BRAM18": 0},
        hw_option(ii),
    )


def characterisation(options: dict[str, list[UnitOption]], n_blocks: int) -> Characterisation:
    params = PolicyParams(PolicyName.MARGIN)
    # decision_unit.v: clog2(10) + 1 = 5 cycles (pipeline) or 10 + 1 (serial), DEC_W 22
    fmt = DecisionFormat(PolicyName.MARGIN, 10, 16, 8)
    unit = f"decision:margin:10:16:0:8:{fmt.thr_w}"
    glue = {
        f"{unit}:early:pipeline": {"LUT": DEC_LUT, "FF": 1, "DSP": 0, "BRAM18": 0},
        f"{unit}:final:pipeline": {"LUT": FINAL_DEC_LUT, "FF": 1, "DSP": 0, "BRAM18": 0},
        f"{unit}:early:serial": {"LUT": SERIAL_DEC_LUT, "FF": 1, "DSP": 0, "BRAM18": 0},
        f"{unit}:final:serial": {"LUT": SERIAL_FINAL_DEC_LUT, "FF": 1, "DSP": 0, "BRAM18": 0},
        "fork:64": {"LUT": FORK_LUT, "FF": 1, "DSP": 0, "BRAM18": 0},
        "queue:64:8": {"LUT": QUEUE_LUT, "FF": 1, "DSP": 0, "BRAM18": 0},
    }
    for k, lut in MERGE_LUT.items():
        glue[f"merge:{k}:{fmt.dec_w}"] = {"LUT": lut, "FF": 1, "DSP": 0, "BRAM18": 0}
    for depth in (4, 8, 16, 32, 64, 128, 256, 512):
        glue[f"gate:64:{fmt.dec_w}:{depth}"] = {"LUT": GATE_LUT, "FF": 1, "DSP": 0, "BRAM18": 0}
    blocks = [f"blocks.{b}" for b in range(n_blocks)]
    heads = {b: f"heads.{b}" for b in range(n_blocks)}
    return Characterisation(blocks, heads, options, glue, {"margin": params}, {"margin": fmt})


def exit_config(positions, fractions, accuracy=0.9):
    return ExitConfig(
        tuple(positions),
        "margin",
        PolicyParams(PolicyName.MARGIN),
        (0,) * (len(positions) - 1),
        0.5,
        accuracy,
        accuracy,
        np.array(fractions, dtype=float),
    )


def board(lut=53200):
    return Board("test", "xc7z020clg400-1", "xc7", 100.0, Resources(LUT=lut, FF=106400, BRAM18=280, DSP=220), {})


def three_block_char():
    rng = np.random.default_rng(1)
    options = {}
    for unit in ("blocks.0", "blocks.1", "blocks.2", "heads.0", "heads.1", "heads.2"):
        base_ii = int(rng.integers(24, 400))  # heads at 4 lanes: some below SCAN (pipelined decision)
        options[unit] = [
            unit_option(
                unit,
                base_ii // lanes,
                base_ii // lanes + 5 + int(rng.integers(0, 3)),
                int(rng.integers(150, 400)) + lanes * int(rng.integers(60, 300)),
                lanes=lanes,
            )
            for lanes in (1, 2, 4)
        ]
    return characterisation(options, 3)


CONFIGS = [
    ((2,), (1.0,), 0.95),
    ((0, 2), (0.5, 0.5), 0.94),
    ((1, 2), (0.7, 0.3), 0.948),
    ((0, 1, 2), (0.4, 0.3, 0.3), 0.93),
]
