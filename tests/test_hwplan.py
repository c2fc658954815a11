"""The hardware plan: folding choices and refusals, on a model built for the purpose."""

import pytest
import torch

from eehw.config import Backbone, ExitSpec, HeadType, ModelConfig
from eehw.errors import EehwError
from eehw.hw.plan import default_folding, plan_design
from eehw.hw.stages import DwcStage, Folding, MvuStage, RequantStage, WindowStage
from eehw.model.export import export_golden
from eehw.model.net import build_model


def _golden(backbone=Backbone.MLP):
    torch.manual_seed(0)
    if backbone == Backbone.MLP:
        cfg = ModelConfig(
            backbone=backbone, widths=(12, 20), exits=(ExitSpec(0, HeadType.LINEAR), ExitSpec(1, HeadType.LINEAR))
        )
        shape = (1, 8, 8)
    else:
        cfg = ModelConfig(backbone=backbone, widths=(4,), pool=(1,), exits=(ExitSpec(0, HeadType.LINEAR),))
        shape = (1, 16)
    model = build_model(cfg, shape, 10, False)
    x = torch.rand(32, *shape)
    model.train()
    with torch.no_grad():
        for _ in range(40):
            model(x)
    return export_golden(model, x)


def test_default_folding_is_the_widest_dividing_lanes():
    assert default_folding(64, 12, 8, 4) == Folding(8, 4)
    assert default_folding(20, 10, 8, 4) == Folding(5, 2)
    assert default_folding(7, 3, 8, 4) == Folding(7, 3)
    assert default_folding(13, 13, 8, 4) == Folding(1, 1)


def test_plan_maps_dense_and_quant_to_stages():
    golden = _golden()
    plan = plan_design(golden, "tiny")
    assert plan.exits == [0, 1]
    block0 = plan.blocks[0]
    mvu = block0.stages[-1]
    assert isinstance(mvu, MvuStage) and (mvu.in_n, mvu.out_n) == (64, 12)
    assert mvu.folding == Folding(8, 4) and mvu.vector_ii == 8 * 3
    # The 8x8 image arrives one pixel a beat; the MVU reads 8-element beats of the flattened stream.
    dwc = block0.stages[0]
    assert isinstance(dwc, DwcStage) and (dwc.in_n, dwc.out_n, dwc.n) == (1, 8, 64)
    assert (block0.in_beat, block0.in_beats, block0.out_beat, block0.out_beats) == (1, 64, 12, 1)
    dense = next(op for op in golden.blocks[0].ops if type(op).__name__ == "Dense")
    relu = golden.blocks[0].ops[-1]
    assert mvu.shift == relu.out_exp - dense.out_exp and (mvu.out_min, mvu.out_max) == (0, 15)
    # Every stage after block 0 starts from the previous block's quantiser.
    assert all(isinstance(s, (MvuStage, RequantStage, DwcStage)) for b in plan.blocks[1:] for s in b.stages)
    baseline = plan_design(golden, "tiny_base", exits=[])
    assert baseline.exits == [1]


def test_plan_refusals_are_one_line():
    golden = _golden()
    with pytest.raises(EehwError, match="must divide"):
        plan_design(golden, "bad", foldings={"blocks.0.2": Folding(3, 4)})
    with pytest.raises(EehwError, match="not candidate exits"):
        plan_design(golden, "bad", exits=[5])


def test_misspelt_layer_names_are_refused_with_the_valid_ones():
    golden = _golden()
    dense = [op.name for op in golden.blocks[0].ops if type(op).__name__ == "Dense"]
    with pytest.raises(
        EehwError,
        match=r"hardware.folding: no layer named blocks.0.9 .*layers with weights: " + dense[0].replace(".", r"\."),
    ):
        plan_design(golden, "bad", foldings={"blocks.0.9": Folding(1, 1)})
    from eehw.hw.stages import MemStyle

    with pytest.raises(EehwError, match="hardware.memory: no layer named head.0"):
        plan_design(golden, "bad", mem_styles={"head.0": MemStyle.BLOCK})
    plan_design(golden, "good", foldings={dense[0]: Folding(1, 1)})  # a real name is taken


def test_convolution_maps_to_a_pixel_stream_window_and_mvu_with_permuted_weights():
    golden = _golden(Backbone.CNN1D)
    plan = plan_design(golden, "cnn")
    window, mvu = plan.blocks[0].stages[:2]
    assert isinstance(window, WindowStage) and isinstance(mvu, MvuStage)
    conv = next(op for op in golden.blocks[0].ops if type(op).__name__ == "Conv")
    assert window.positions == 16 and mvu.positions == 16
    # One pixel (1 channel) per input beat, the window in beats of the MVU's SIMD, one output
    # pixel (all 4 channels) per MVU output beat.
    assert (window.in_beat, window.in_beats, window.out_beat) == (1, 16, mvu.folding.simd)
    assert window.out_beats == 16 * mvu.in_n // mvu.folding.simd
    assert (mvu.out_beat, mvu.out_beats) == (4, 16)
    assert (plan.blocks[0].out_beat, plan.blocks[0].out_beats) == (4, 16)
    # Window beats hold (kernel offset k, channel c) at k*C + c: the MVU weight is W[o, c, k] there.
    out, c_in, k = conv.weight.shape
    for o in range(out):
        for kk in range(k):
            for c in range(c_in):
                assert mvu.weight[o, kk * c_in + c] == conv.weight[o, c, kk]


def test_identity_quantiser_keeps_the_carried_width():
    """A head whose input quantiser is wider (8-bit signed) than what its block carries (4-bit
    unsigned ReLU output) at the same scale is the identity: no stage, and the head's MVU reads
    4-bit unsigned elements, the bus it is wired to (the cause of a user's RTL mismatches)."""
    import dataclasses

    from eehw.model.golden import Quant

    golden = _golden()
    head = golden.heads[0]
    block_out = [op for op in golden.blocks[0].ops if isinstance(op, Quant)][-1]
    assert (block_out.bits, block_out.signed) == (4, False)
    wide = dataclasses.replace(head.ops[0], bits=8, signed=True)
    golden = dataclasses.replace(
        golden, heads={**golden.heads, 0: dataclasses.replace(head, ops=(wide, *head.ops[1:]))}
    )
    plan = plan_design(golden, "tiny")
    assert not any(isinstance(s, RequantStage) for s in plan.heads[0].stages)
    mvu = next(s for s in plan.heads[0].stages if isinstance(s, MvuStage))
    assert (mvu.a_w, mvu.a_signed) == (plan.blocks[0].out_w, plan.blocks[0].out_signed) == (4, False)
    assert (plan.heads[0].in_w, plan.heads[0].in_signed) == (4, False)
