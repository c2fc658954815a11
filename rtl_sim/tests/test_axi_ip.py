"""The RTL top as the deployable IP (eehw.hw.rtl.axi_ip): its AXI wrapper, simulated as the board's PS and
AXI DMA drive it, against the golden model and the policy.

Random models of eehw.random_models (a 2-D CNN with three exits and one input word per beat, an
MLP with two exits and three words per beat, an MLP without an early exit) go through the flow's
own generators: plan, RTL, top description, wrapper and register map. The samples are packed by
the PYNQ driver's ``pack_inputs``, the registers are written where ``register_map.json`` says, and
the result words are decoded by the driver's ``unpack_results``, so this checks the contract
the board relies on. The reference is ``GoldenModel.forward`` + ``policies.decide``.

Three batches per design: the first with the registers as reset (the flow's thresholds, baked
into the wrapper), then after the driver's writes of other thresholds and another batch size
(every sample to exit 1, then every sample to the final exit). TLAST must come with the last
result of each batch, and nothing after it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hdl_tools import build_and_run, lint

from eehw.board import load_board
from eehw.deploy.pynq_driver import RegisterMap, pack_inputs, threshold_words, unpack_results
from eehw.hw.hls.top import TopDesign
from eehw.hw.plan import plan_design
from eehw.hw.rtl.axi_ip import STATUS_OFFSET, write_rtl_ip
from eehw.hw.rtl.design import generate
from eehw.model.export import export_golden
from eehw.policy.policies import decide
from eehw.random_models import build_model, policy_and_thresholds, random_spec, renamed

BATCHES = (45, 37, 20)


@pytest.mark.parametrize("seed", [8, 14, 11])
def test_axi_wrapper_is_the_driver_contract(vl_env, tmp_path, seed):
    spec = random_spec(seed)
    model, x = build_model(spec)
    golden = export_golden(model, torch.from_numpy(x[:2]))
    logits = golden.forward(x)
    params, thresholds = policy_and_thresholds(spec, golden, logits)
    plan = renamed(plan_design(golden, f"ip{seed}", None), f"ip{seed}")
    rtl = generate(plan, params, tmp_path / "rtl", golden.exits)
    top = TopDesign.from_golden(f"ip{seed}", golden, rtl.plan.exits, params, rtl.decision, thresholds)
    files = write_rtl_ip(rtl, top, load_board("pynq-z2"), tmp_path / "rtl_ip")
    regmap = RegisterMap.load(files.register_map)
    assert list(regmap.thresholds) == thresholds
    tcl = files.tcl.read_text()
    assert "ipx::package_project" in tcl and f"eehw.org:eehw:{files.top}:1.0" in tcl
    assert all(p.exists() for p in rtl.sources) and str(files.wrapper.resolve()) in tcl

    fmt = rtl.decision
    # Second batch: exit 0 disabled, the others at the value every sample passes, so every sample
    # takes exit 1 (the final exit when there is no exit 1).
    second = [None] + [fmt.always_exit] * (len(thresholds) - 1) if thresholds else []
    x_int = golden.quantize_input(x)
    base = regmap.batch_registers[0] & ~0xFFFF  # the wrapper's one AXI-Lite segment
    batches, expected, start = [], [], 0
    never = [None] * len(thresholds)  # third batch: every sample to the final exit
    for b, (n, t) in enumerate(zip(BATCHES, (thresholds, second, never))):
        writes = [(a - base, n) for a in regmap.batch_registers]
        if b:  # the first batch runs on the reset values
            writes += [(a - base, v) for a, v in threshold_words(t, regmap)]
        batches.append(
            {
                "samples": n,
                "words": pack_inputs(x_int[start : start + n], regmap).tolist(),
                "writes": writes,
                "read": [a - base for a in regmap.exit_registers],
                "gap_p": 0.3,
                "stall_p": 0.4,
            }
        )
        expected.append(decide(params, [z[start : start + n] for z in logits], golden.logit_exps, t))
        start += n
    out = tmp_path / "results.json"
    cfg = {
        "seed": seed,
        "batches": batches,
        "status_offset": STATUS_OFFSET,
        "out": str(out),
        "max_cycles": 400 * rtl.latency_bound + 50 * sum(len(b["words"]) for b in batches),
    }
    lint(files.top, {}, [*rtl.sources, files.wrapper])
    build_and_run(
        files.top,
        {},
        tmp_path / "sim",
        {"AXI_IP_CFG": json.dumps(cfg)},
        test_module="cocotb_axi_ip",
        srcs=[*rtl.sources, files.wrapper],
    )
    got = json.loads(out.read_text())

    assert got["status"] == 0  # no tag-check error
    # as reset: the flow's thresholds
    assert [got["batches"][0]["read_before"][str(a - base)] for a in regmap.exit_registers] == [
        v for _, v in threshold_words(thresholds, regmap)
    ]
    assert [got["batches"][1]["read_after"][str(a - base)] for a in regmap.exit_registers] == [
        v for _, v in threshold_words(second, regmap)
    ]
    for batch, n, (want_exit, want_class) in zip(got["batches"], BATCHES, expected):
        words = [w for w, _ in batch["results"]]
        lasts = [last for _, last in batch["results"]]
        assert len(words) == n, f"{len(words)} results for {n} samples"
        assert lasts == [0] * (n - 1) + [1]
        res = unpack_results(np.array(words, dtype=np.uint64), regmap, n)  # refuses lost or repeated tags
        np.testing.assert_array_equal(res.exits, want_exit)
        np.testing.assert_array_equal(res.classes, want_class)
    assert len(set(np.concatenate([e for e, _ in expected]).tolist())) == min(3, len(thresholds) + 1)
