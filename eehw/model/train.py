"""Training regimes of the early-exit survey (section 2.3): end-to-end, IC-only on a frozen
backbone, mixed (backbone first, then everything), each optionally with self-distillation from
the final exit. Checkpoints are cached by a hash of everything that determines the weights
(Config.training_hash) as checked entries of eehw.cache: a corrupt or stale one is retrained.
"""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eehw.cache import atomic_save, checked_load, discard
from eehw.config import Config, Regime, TrainingConfig, factory_modules
from eehw.errors import EehwError
from eehw.model.data import Dataset
from eehw.model.export import check_contract
from eehw.model.net import exit_positions, float_value, make_model
from eehw.paths import cache_dir
from eehw.progress import progress


@dataclass
class TrainedModel:
    model: nn.Module
    checkpoint: Path
    seconds: float  # training time when the checkpoint was made
    cached: bool  # reused from the cache rather than trained now


def input_signed(data: Dataset) -> bool:
    """Signed input quantiser only when the data has negative values (digits is in [0, 1))."""
    return bool(data.x_train.min() < 0)


def checkpoint_path(cfg: Config) -> Path:
    """Keyed by Config.training_hash: config, dataset content, training code, factory sources."""
    return cache_dir() / "checkpoints" / f"{cfg.name}-{cfg.training_hash()}.pt"


def train(cfg: Config, data: Dataset, force: bool = False) -> TrainedModel:
    """Train the configured model, or reuse the cached checkpoint of the same configuration.

    A cached checkpoint that is corrupt or does not fit the model is deleted with a one-line
    notice and the model retrained; the checkpoint is written so an interrupt leaves none.
    """
    if cfg.model.factory:
        _forget_factory(cfg)
    model = make_model(cfg, data.input_shape, data.num_classes, input_signed(data))
    # The whole quantisation contract on the untrained instance: refused before the first epoch.
    check_contract(model, torch.from_numpy(data.x_train[:2]), data.num_classes)
    path = checkpoint_path(cfg)
    saved = None if force else checked_load(path, "checkpoint", "retraining")
    if saved is not None:
        problem = _restore(model, saved)
        if problem is None:
            model.eval()
            return TrainedModel(model, path, float(saved["seconds"]), cached=True)
        discard(path, "checkpoint", f"is stale ({problem})", "retraining")
        # A fresh instance: a load_state_dict that failed part way may have set some weights.
        model = make_model(cfg, data.input_shape, data.num_classes, input_signed(data))
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    _run_regime(model, cfg, data)
    seconds = time.perf_counter() - start
    model.eval()
    atomic_save({"state_dict": model.state_dict(), "seconds": seconds, "config": str(cfg.source)}, path)
    return TrainedModel(model, path, seconds, cached=False)


def _forget_factory(cfg: Config) -> None:
    """Drop the user's modules from sys.modules, so a factory edited since this process last
    imported it is built from the source its checkpoint key hashes."""
    for name in factory_modules(cfg):
        sys.modules.pop(name, None)
    importlib.invalidate_caches()


def _restore(model: nn.Module, saved) -> str | None:
    """Load a cached checkpoint into ``model``; why it does not fit, if it does not.

    load_state_dict is the judge (Brevitas accepts the keys its runtime-statistics scales add
    during training); its first complaint names the layer.
    """
    state = saved.get("state_dict") if isinstance(saved, dict) else None
    if not isinstance(state, dict) or not isinstance(saved.get("seconds"), (int, float)):
        return "no state_dict in it"
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
        return f"does not fit the model: {lines[1] if len(lines) > 1 else lines[0]}"
    return None


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The backbone is the blocks plus the final classifier: what IC-only training freezes."""
    final = str(exit_positions(model)[-1])
    return list(model.blocks.parameters()) + list(model.heads[final].parameters())


def _run_regime(model: nn.Module, cfg: Config, data: Dataset) -> None:
    t = cfg.training
    n_exits = len(exit_positions(model))
    if t.exit_weights is not None and len(t.exit_weights) != n_exits:
        raise EehwError(f"training.exit_weights has {len(t.exit_weights)} entries but the model has {n_exits} exits")
    backbone_epochs = t.backbone_epochs or t.epochs
    if t.regime == Regime.E2E:
        _fit(model, data, t, t.epochs, "end-to-end", trainable=None, loss_exits="all")
        return
    if t.backbone_checkpoint:
        _load_backbone(model, cfg)
    else:
        _fit(model, data, t, backbone_epochs, "backbone", trainable=backbone_parameters(model), loss_exits="final")
    if t.regime == Regime.IC_ONLY:
        _fit(
            model,
            data,
            t,
            t.epochs,
            "exit heads (frozen backbone)",
            trainable=None,
            loss_exits="all",
            frozen_backbone=True,
        )
    else:
        _fit(model, data, t, t.epochs, "all (mixed)", trainable=None, loss_exits="all")


def _load_backbone(model: nn.Module, cfg: Config) -> None:
    path = cfg.backbone_checkpoint_path()
    if not path.exists():
        raise EehwError(f"training.backbone_checkpoint: {path} does not exist")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling raises anything
        raise EehwError(
            f"training.backbone_checkpoint: {path} cannot be read ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'})"
        ) from None
    state = saved.get("state_dict", saved) if isinstance(saved, dict) else None
    if not isinstance(state, dict):
        raise EehwError(f"training.backbone_checkpoint: {path} holds no state_dict")
    final = f"heads.{exit_positions(model)[-1]}."
    wanted = {k: v for k, v in state.items() if k.startswith("blocks.") or k.startswith(final)}
    own = model.state_dict()
    missing = [k for k in own if (k.startswith("blocks.") or k.startswith(final)) and k not in wanted]
    if missing or not wanted:
        raise EehwError(
            f"training.backbone_checkpoint: {path} does not match this model (missing {missing[:1] or 'blocks'})"
        )
    try:
        model.load_state_dict(wanted, strict=False)
    except RuntimeError as exc:
        raise EehwError(
            f"training.backbone_checkpoint: {path} has different shapes: {str(exc).splitlines()[-1].strip()}"
        ) from None


def _fit(
    model: nn.Module,
    data: Dataset,
    t: TrainingConfig,
    epochs: int,
    phase: str,
    trainable: list[nn.Parameter] | None,
    loss_exits: str,
    frozen_backbone: bool = False,
) -> None:
    final = str(exit_positions(model)[-1])
    if frozen_backbone:
        frozen = {id(p) for p in backbone_parameters(model)}
        params = [p for p in model.parameters() if id(p) not in frozen]
        for p in backbone_parameters(model):
            p.requires_grad_(False)
    else:
        params = trainable if trainable is not None else list(model.parameters())
        for p in model.parameters():
            p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    steps_per_epoch = max(1, int(np.ceil(len(data.x_train) / t.batch_size)))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    x_all = torch.from_numpy(data.x_train)
    y_all = torch.from_numpy(data.y_train)
    generator = torch.Generator().manual_seed(int(torch.initial_seed()) % (2**31))
    weights = t.exit_weights or (1.0,) * len(model.heads)
    with progress() as bar:
        task = bar.add_task(f"train {phase}", total=epochs)
        for epoch in range(epochs):
            model.train()
            if frozen_backbone:
                # Eval mode keeps the backbone's quantiser statistics fixed as well as its weights.
                model.blocks.eval()
                model.heads[final].eval()
            order = torch.randperm(len(x_all), generator=generator)
            total = 0.0
            for start in range(0, len(order), t.batch_size):
                idx = order[start : start + t.batch_size]
                logits = [float_value(z) for z in model(x_all[idx])]
                loss = _loss(logits, y_all[idx], weights, t, loss_exits)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item() * len(idx)
            bar.update(task, advance=1, description=f"train {phase} loss {total / len(order):.3f}")
    for p in model.parameters():
        p.requires_grad_(True)


def _loss(logits: list[torch.Tensor], y: torch.Tensor, weights, t: TrainingConfig, loss_exits: str) -> torch.Tensor:
    final = logits[-1]
    if loss_exits == "final":
        return F.cross_entropy(final, y)
    total = weights[-1] * F.cross_entropy(final, y)
    distill = t.distillation
    for w, z in zip(weights[:-1], logits[:-1]):
        ce = F.cross_entropy(z, y)
        if distill is not None:
            # Self-distillation: the final exit teaches the earlier ones (its logits are not updated by it).
            temp = distill.temperature
            teacher = F.softmax(final.detach() / temp, dim=1)
            kl = F.kl_div(F.log_softmax(z / temp, dim=1), teacher, reduction="batchmean") * temp * temp
            ce = (1 - distill.alpha) * ce + distill.alpha * kl
        total = total + w * ce
    return total
