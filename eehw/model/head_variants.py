"""Alternative exit heads on one frozen backbone, so the co-design loop can choose a head type
per exit point without retraining the network (survey section 3: "train once, deploy").

For every head type in ``dse.heads`` the config's model is rebuilt with that type at every
early exit and trained IC-only with the config's trained blocks and final classifier loaded
and frozen (``training.backbone_checkpoint``); the checkpoint is cached by that variant's
training hash like any other. Heads on a frozen backbone are trained independently (each
loss term touches its own head only), so a design that takes its head at exit 0 from one
variant and at exit 1 from another is exactly the union of the two: ``assemble`` builds it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from eehw.config import Config, ExitSpec, HeadType, Regime
from eehw.errors import EehwError
from eehw.model.data import Dataset
from eehw.model.golden import GoldenModel, IntBlock
from eehw.model.net import make_model
from eehw.model.train import TrainedModel, checkpoint_path, input_signed, train


def own_heads(cfg: Config) -> dict[int, str]:
    """The config's head type at every exit position."""
    return {e.after: e.head.value for e in cfg.model.exits}


def with_heads(cfg: Config, heads: dict[int, str]) -> Config:
    """The config with the head types of ``heads`` at those positions (others unchanged)."""
    exits = tuple(ExitSpec(e.after, HeadType(heads.get(e.after, e.head.value))) for e in cfg.model.exits)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, exits=exits))


def variant_config(cfg: Config, head: HeadType) -> Config:
    """``cfg`` with ``head`` at every early exit, trained IC-only on cfg's trained backbone."""
    final = cfg.model.exits[-1].after
    mixed = with_heads(cfg, {e.after: head.value for e in cfg.model.exits if e.after != final})
    training = dataclasses.replace(
        cfg.training,
        regime=Regime.IC_ONLY,
        epochs=cfg.dse.head_epochs or cfg.training.epochs,
        backbone_epochs=0,
        backbone_checkpoint=str(checkpoint_path(cfg)),
    )
    return dataclasses.replace(mixed, name=f"{cfg.name}-{head.value}-heads", training=training)


@dataclass
class HeadVariant:
    head: str
    cfg: Config
    trained: TrainedModel
    golden: GoldenModel
    positions: list[int]  # early exits where this type is an alternative (the config has another there)


@dataclass
class HeadChoices:
    """The config's own model and, per alternative head type, the variant that holds those heads."""

    cfg: Config
    trained: TrainedModel
    golden: GoldenModel
    variants: dict[str, HeadVariant] = field(default_factory=dict)

    def types(self, position: int) -> list[str]:
        """Head types available at an exit, the config's own first."""
        return [own_heads(self.cfg)[position]] + [t for t, v in self.variants.items() if position in v.positions]

    def golden_for(self, position: int, head: str) -> GoldenModel:
        if head == own_heads(self.cfg)[position]:
            return self.golden
        variant = self.variants.get(head)
        if variant is None or position not in variant.positions:
            raise EehwError(f"no trained '{head}' head at exit {position}; add it to dse.heads in the config")
        return variant.golden


def train_alternatives(
    cfg: Config, data: Dataset, trained: TrainedModel, golden: GoldenModel, force: bool = False
) -> HeadChoices:
    """Train (or reuse) every alternative head type of ``cfg.dse.heads`` on cfg's frozen backbone."""
    from eehw.model.export import export_golden

    choices = HeadChoices(cfg, trained, golden)
    own = own_heads(cfg)
    early = [e.after for e in cfg.model.exits[:-1]]
    if cfg.dse.heads and trained.checkpoint != checkpoint_path(cfg):
        raise EehwError(
            "dse.heads: alternative heads need the config's own cached checkpoint (train it with eehw train)"
        )
    for head in cfg.dse.heads:
        positions = [p for p in early if own[p] != head.value]
        if not positions:
            continue
        vcfg = variant_config(cfg, head)
        trained = train(vcfg, data, force=force)
        vgolden = export_golden(trained.model, torch.from_numpy(data.x_train[:2]))
        _check_same_backbone(golden, vgolden, head.value)
        choices.variants[head.value] = HeadVariant(head.value, vcfg, trained, vgolden, positions)
    return choices


def assemble(choices: HeadChoices, data: Dataset, heads: dict[int, str]) -> tuple[Config, TrainedModel]:
    """The Brevitas model with the config's backbone and final head and, at each early exit,
    the head of type ``heads[position]`` (the config's own where not given)."""
    cfg = with_heads(choices.cfg, heads)
    own = own_heads(choices.cfg)
    model = make_model(cfg, data.input_shape, data.num_classes, input_signed(data))
    base = choices.trained.model
    state = {k: v for k, v in base.state_dict().items() if not k.startswith("heads.")}
    for position in own:
        head = heads.get(position, own[position])
        if head == own[position]:
            source = base
        else:
            choices.golden_for(position, head)  # one line naming the head when it was never trained
            source = choices.variants[head].trained.model
        prefix = f"heads.{position}."
        state.update({k: v for k, v in source.state_dict().items() if k.startswith(prefix)})
    model.load_state_dict(state)
    model.eval()
    return cfg, TrainedModel(model, checkpoint_path(choices.cfg), 0.0, cached=True)


def assembled_golden(choices: HeadChoices, heads: dict[int, str]) -> GoldenModel:
    """The golden model of ``assemble``'s network, from the exported parts (no torch needed)."""
    parts = {p: choices.golden_for(p, heads.get(p, own_heads(choices.cfg)[p])).heads[p] for p in choices.golden.heads}
    return dataclasses.replace(choices.golden, heads=parts)


def _check_same_backbone(a: GoldenModel, b: GoldenModel, head: str) -> None:
    """IC-only training must leave the backbone's integers untouched; anything else would make
    the alternative heads' logits belong to another network."""
    if len(a.blocks) != len(b.blocks) or not all(_same_block(x, y) for x, y in zip(a.blocks, b.blocks)):
        raise EehwError(f"the '{head}' head variant changed the frozen backbone; delete its checkpoint and retrain")
    final = a.exits[-1]
    if not _same_block(a.heads[final], b.heads[final]):
        raise EehwError(f"the '{head}' head variant changed the final classifier; delete its checkpoint and retrain")


def _same_block(x: IntBlock, y: IntBlock) -> bool:
    if len(x.ops) != len(y.ops):
        return False
    for p, q in zip(x.ops, y.ops):
        if type(p) is not type(q):
            return False
        for f in dataclasses.fields(p):
            u, v = getattr(p, f.name), getattr(q, f.name)
            if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
                if u is None or v is None or not np.array_equal(u, v):
                    return False
            elif u != v:
                return False
    return True
