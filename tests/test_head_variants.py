"""Head type per exit (issue 5): alternative heads trained IC-only on the frozen backbone, the
DSE choosing among them from cached logits, and the flow building the chosen mix. Every check
compares with an independent path: Brevitas's own forward pass of the source models, the
generator's stated latency bound, the golden model in the RTL simulation."""

import numpy as np
import pytest
import torch

from eehw import flow
from eehw.artefacts import ExitChoice
from eehw.dse.characterise import characterise
from eehw.dse.exits import alternative_logits, exit_configs, hardware_policies, kept_params
from eehw.dse.explore import dse_dir
from eehw.dse.search import Constraints, search
from eehw.hw.plan import plan_design
from eehw.hw.rtl.design import generate
from eehw.hw.timing import exit_paths
from eehw.model.export import brevitas_int_logits, export_golden
from eehw.model.head_variants import assemble, assembled_golden, train_alternatives
from eehw.policy.logits import cached_logits
from eehw.policy.policies import PolicyParams, decide

TINY_CNN = """
name: tiny_heads
seed: 0
data: {name: digits}
model:
  backbone: cnn2d
  widths: [4, 4]
  kernel: 3
  pool: [2, 1]
  head_channels: 2
  head_pool: 2
  exits:
    - {after: 0, head: pool_linear}
training: {regime: e2e, epochs: 2, batch_size: 128, lr: 0.02}
policy: {name: margin, max_drop_pp: 2.0}
hardware: {max_simd: 2, max_pe: 1}
dse: {heads: [linear, conv_pool_linear], head_epochs: 1}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("heads") / "tiny_heads.yaml"
    path.write_text(TINY_CNN)
    d = flow.run(path, stop_after="evaluate")
    choices = train_alternatives(d.cfg, d.data, d.trained, d.golden)
    return path, d, choices


def _brevitas(model, d):
    golden = export_golden(model, torch.from_numpy(d.data.x_train[:2]))
    return brevitas_int_logits(model, d.data.x_test, golden)


@pytest.mark.slow
def test_alternatives_keep_the_backbone_and_assemble_exactly(tiny):
    _, d, choices = tiny
    assert set(choices.variants) == {"linear", "conv_pool_linear"}
    assert choices.types(0) == ["pool_linear", "linear", "conv_pool_linear"]
    base = _brevitas(d.trained.model, d)
    for head, variant in choices.variants.items():
        assert variant.positions == [0]
        z = _brevitas(variant.trained.model, d)
        np.testing.assert_array_equal(z[-1], base[-1])  # the final classifier is untouched
        assert not np.array_equal(z[0], base[0])  # ... and the early head is another one
        cfg, trained = assemble(choices, d.data, {0: head})
        assert cfg.model.exits[0].head.value == head and cfg.name == d.cfg.name
        mixed = _brevitas(trained.model, d)
        np.testing.assert_array_equal(mixed[0], z[0])
        np.testing.assert_array_equal(mixed[-1], base[-1])
        # The golden model the DSE assembles without torch is the exported assembled network.
        golden = assembled_golden(choices, {0: head})
        for a, b in zip(golden.forward(d.data.x_test), mixed):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_head_type_never_trained_is_named_in_one_line(tiny):
    from eehw.errors import EehwError
    from eehw.model.head_variants import HeadChoices

    _, d, _ = tiny
    bare = HeadChoices(d.cfg, d.trained, d.golden)  # as if dse.heads had listed nothing
    with pytest.raises(EehwError, match="no trained 'linear' head at exit 0; add it to dse.heads"):
        assemble(bare, d.data, {0: "linear"})


@pytest.mark.slow
def test_exit_configurations_cover_every_head_choice(tiny):
    _, d, choices = tiny
    logits = cached_logits(d.cfg, d.data, d.golden)
    pols = hardware_policies(d.cfg, logits)
    alts = alternative_logits(d.cfg, choices, d.data, pols)
    assert sorted(alts[0]) == ["conv_pool_linear", "linear"]
    configs = exit_configs(d.golden.exits, d.golden.logit_exps, logits, pols, (0.0, 2.0, 5.0), alts)
    heads = {c.heads for c in configs if len(c.positions) == 2}
    assert heads == {(None, None), ("linear", None), ("conv_pool_linear", None)}
    # An exit configuration's accuracy is the policy applied to that head's own golden logits.
    y = d.data.y_test
    for c in configs:
        if c.heads and c.heads[0] is not None:
            golden = assembled_golden(choices, {0: c.heads[0]})
            z = golden.forward(d.data.x_test)
            kp = kept_params(c.params, golden.exits, c.positions)
            _, pred = decide(kp, z, golden.logit_exps, list(c.thresholds))
            assert c.accuracy == pytest.approx(float((pred == y).mean()))


@pytest.mark.slow
def test_composed_cycles_of_an_alternative_head_equal_the_generators_bound(tiny, tmp_path, fake_synth_pool):
    from eehw.board import load_board
    from eehw.hw.stages import Folding

    _, d, choices = tiny
    logits = cached_logits(d.cfg, d.data, d.golden)
    pols = hardware_policies(d.cfg, logits, ("margin",))
    alts = alternative_logits(d.cfg, choices, d.data, pols)
    configs = exit_configs(d.golden.exits, d.golden.logit_exps, logits, pols, (2.0, 5.0), alts)
    board = load_board("pynq-z2")
    char = characterise(
        d.golden,
        board,
        pols,
        max_simd=2,
        max_pe=1,
        pool=fake_synth_pool,
        alternatives={t: (v.golden, v.positions) for t, v in choices.variants.items()},
        own_types={0: "pool_linear", 1: "linear"},
    )
    assert set(char.alt_heads[0]) == {"linear", "conv_pool_linear"}
    result = search(char, configs, board, Constraints(), "latency")
    checked = 0
    for i in range(result.evaluated):
        des = result.design(i)
        if des["exits"] != [0, 1] or des["heads"][0] != "conv_pool_linear" or checked >= 3:
            continue
        golden = assembled_golden(choices, {0: "conv_pool_linear"})
        plan = plan_design(golden, f"chk{i}", [0], {k: Folding(*v) for k, v in des["folding"].items()}, 2, 1)
        rtl = generate(plan, pols["margin"], tmp_path / f"d{i}", golden.exits)
        assert des["predicted"]["worst_latency"] == exit_paths(plan, rtl.decision)[-1].latency >= rtl.latency_bound
        checked += 1
    assert checked


@pytest.mark.slow
def test_flow_builds_the_chosen_head_bit_exact(tiny):
    """chosen.json naming an alternative head: the flow trains nothing new, builds that head
    and the simulated design equals the golden model on every test sample."""
    path, d, choices = tiny
    out = dse_dir("pynq-z2", d.cfg.name)
    out.mkdir(parents=True, exist_ok=True)
    ExitChoice(
        config=d.cfg.name,
        board="pynq-z2",
        training_hash=d.cfg.training_hash(),
        exits=(0, 1),
        heads=("conv_pool_linear", "linear"),
        policy=PolicyParams("margin"),
        thresholds=(0,),
        folding={},
    ).save(out / "chosen.json")
    try:
        run = flow.run(path, board="pynq-z2", stop_after="simulate")
    finally:
        (out / "chosen.json").unlink()
    assert run.cfg.model.exits[0].head.value == "conv_pool_linear"

    # The built head convolves (a sliding window), the config's own pool_linear head does not.
    def modules(block):
        return {s.module for s in block.stages}

    assert "sliding_window" in modules(run.rtl["early_exit"].plan.heads[0])
    assert "sliding_window" not in modules(plan_design(d.golden, "x", [0], {}, 2, 1).heads[0])
    mixed = _brevitas(assemble(choices, d.data, {0: "conv_pool_linear"})[1].model, d)
    for a, b in zip(run.golden.forward(d.data.x_test), mixed):
        np.testing.assert_array_equal(a, b)
    m = run.measured["early_exit"].bit_exact
    assert m["samples"] == len(d.data.x_test) and m["mismatches"] == 0
    assert run.hls["mismatches"] and not any(run.hls["mismatches"].values())
