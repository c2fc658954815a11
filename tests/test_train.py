"""Training regimes and the checkpoint cache."""

import pytest
import torch

from eehw.config import load_config
from eehw.model.data import load_dataset
from eehw.model.train import train


def _split_state(model):
    """(backbone, early heads) entries of the state dict: blocks + final head vs the rest."""
    final = f"heads.{max(model.heads.keys(), key=int)}."
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    backbone = {k: v for k, v in state.items() if k.startswith("blocks.") or k.startswith(final)}
    return backbone, {k: v for k, v in state.items() if k not in backbone}


@pytest.mark.slow
def test_e2e_is_deterministic_and_cached(tiny_config):
    cfg = load_config(tiny_config("e2e", epochs=2, seed=3))
    data = load_dataset(cfg.data, cfg.seed, cfg.base_dir)
    first = train(cfg, data)
    assert not first.cached and first.checkpoint.exists()
    again = train(cfg, data)
    assert again.cached
    retrained = train(cfg, data, force=True)
    for a, b in zip(first.model.state_dict().values(), retrained.model.state_dict().values()):
        assert torch.equal(a, b)  # same seed, same weights


@pytest.mark.slow
def test_ic_only_leaves_backbone_unchanged(tiny_config, tmp_path):
    base_cfg = load_config(tiny_config("e2e", epochs=2, seed=5))
    data = load_dataset(base_cfg.data, base_cfg.seed, base_cfg.base_dir)
    backbone = train(base_cfg, data)
    before_backbone, before_heads = _split_state(backbone.model)
    cfg = load_config(tiny_config("ic_only", epochs=2, seed=5, extra=f"  backbone_checkpoint: {backbone.checkpoint}"))
    trained = train(cfg, data)
    after_backbone, after_heads = _split_state(trained.model)
    assert before_backbone.keys() == after_backbone.keys()
    for key, value in before_backbone.items():
        assert torch.equal(value, after_backbone[key]), key
    # ...while the exit heads did train.
    assert any(not torch.equal(v, after_heads[k]) for k, v in before_heads.items() if v.dtype.is_floating_point)


@pytest.mark.slow
def test_mixed_and_distillation_train_everything(tiny_config):
    cfg = load_config(
        tiny_config(
            "mixed", epochs=1, seed=7, extra="  backbone_epochs: 1\n  distillation: {temperature: 2.0, alpha: 0.7}"
        )
    )
    data = load_dataset(cfg.data, cfg.seed, cfg.base_dir)
    torch.manual_seed(cfg.seed)
    from eehw.model.net import make_model
    from eehw.model.train import input_signed

    untrained = make_model(cfg, data.input_shape, data.num_classes, input_signed(data))
    trained = train(cfg, data).model
    before = dict(untrained.named_parameters())
    unchanged = [
        name
        for name, p in trained.named_parameters()
        if name.endswith(("weight", "bias")) and torch.equal(p, before[name])
    ]
    assert not unchanged
