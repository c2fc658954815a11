"""Typed run configuration, read from one YAML file (configs/*.yaml).

Every section is a frozen dataclass; unknown keys, wrong types and bad values are refused
with one line naming the file and the key, so a typo never silently becomes a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from eehw.errors import EehwError
from eehw.model.data import DATASET_NAMES as DATASETS
from eehw.paths import shipped
from eehw.yamlfile import YamlReader, read_yaml

DEFAULT_CONFIG = "digits_mlp"


class Backbone(str, Enum):
    MLP = "mlp"
    CNN1D = "cnn1d"
    CNN2D = "cnn2d"


class HeadType(str, Enum):
    LINEAR = "linear"
    POOL_LINEAR = "pool_linear"
    CONV_POOL_LINEAR = "conv_pool_linear"


class Regime(str, Enum):
    E2E = "e2e"
    IC_ONLY = "ic_only"
    MIXED = "mixed"


class SelectionMode(str, Enum):
    TARGET = "target"
    BUDGETED = "budgeted"
    SUBNET = "subnet"


POLICIES = ("margin", "max_softmax", "max_softmax_pow2", "entropy", "patience")


@dataclass(frozen=True)
class ExitSpec:
    after: int  # index of the backbone block whose output the head reads
    head: HeadType


@dataclass(frozen=True)
class ModelConfig:
    backbone: Backbone | None = None
    widths: tuple[int, ...] = ()  # MLP hidden widths or CNN channels, one backbone block each
    kernel: int = 3
    pool: tuple[int, ...] = ()  # CNN max-pool size after each block (1 = none)
    weight_bits: int = 4
    act_bits: int = 4
    input_bits: int = 8
    logit_bits: int = 16
    exits: tuple[ExitSpec, ...] = ()
    head_channels: int = 8  # conv_pool_linear heads
    head_pool: int = 2  # pool_linear / conv_pool_linear heads
    factory: str | None = None  # "module:function" building a user's own Brevitas model


@dataclass(frozen=True)
class Distillation:
    temperature: float = 3.0
    alpha: float = 0.5


@dataclass(frozen=True)
class TrainingConfig:
    regime: Regime = Regime.E2E
    epochs: int = 40
    backbone_epochs: int = 0  # ic_only / mixed: epochs of the backbone phase (0 = same as epochs)
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 0.0
    exit_weights: tuple[float, ...] | None = None  # e2e loss weight per exit (default all 1)
    distillation: Distillation | None = None
    backbone_checkpoint: str | None = None  # ic_only: load the backbone instead of training it


@dataclass(frozen=True)
class PolicyConfig:
    name: str = "margin"
    mode: SelectionMode = SelectionMode.TARGET
    max_drop_pp: float = 0.5  # target mode: accuracy within this many points of the final exit
    max_cost: float | None = None  # budgeted mode: mean cost as a fraction of the final-only network
    exit: int | None = None  # subnet mode: always leave at this exit
    frac_bits: int = 8  # max_softmax_pow2: fractional bits of the exponent sum
    calibrate: bool = True  # fit a temperature per exit on validation (softmax policies)


@dataclass(frozen=True)
class HardwareConfig:
    max_simd: int = 8  # default folding: the widest SIMD <= this that divides a layer's inputs
    max_pe: int = 4  # ... and the widest PE <= this that divides its outputs
    folding: tuple[tuple[str, int, int], ...] = ()  # per-layer overrides: (layer name, SIMD, PE)
    memory: tuple[tuple[str, str], ...] = ()  # per-layer weight memory: (layer name, auto|block|distributed)


@dataclass(frozen=True)
class DseConfig:
    """`eehw dse` settings kept with the model (command-line flags override them)."""

    heads: tuple[HeadType, ...] = ()  # alternative head types per early exit, trained IC-only on the frozen backbone
    head_epochs: int | None = None  # epochs for those heads (default: training.epochs)
    scheduler: str | None = None  # Dask scheduler address (tcp://HOST:PORT) for characterisation and validation
    # Worst-case ceiling: the final-exit path may take at most this times the fastest no-exit
    # baseline's latency (default eehw.dse.search.WORST_LATENCY_FACTOR). The application's
    # call: a deeper-folded rarely reached block saves LUTs and lengthens that path.
    worst_latency_factor: float | None = None


@dataclass(frozen=True)
class Config:
    name: str
    seed: int
    data: dict[str, Any]
    model: ModelConfig
    training: TrainingConfig
    policy: PolicyConfig
    hardware: HardwareConfig = HardwareConfig()
    dse: DseConfig = DseConfig()
    source: Path = field(default=Path("."), compare=False)

    @property
    def base_dir(self) -> Path:
        """Folder of the config file: relative paths in it are read from here."""
        return self.source.parent

    def backbone_checkpoint_path(self) -> Path | None:
        """training.backbone_checkpoint, a relative path read from the config's folder."""
        if not self.training.backbone_checkpoint:
            return None
        path = Path(self.training.backbone_checkpoint)
        return path if path.is_absolute() else self.base_dir / path

    def training_hash(self) -> str:
        """Content hash of everything that determines the trained weights: the config's
        training sections, the dataset's content, the training code and the stack's versions,
        a backbone checkpoint's bytes and, for a factory model, the user's module and the
        user's own modules it imports. Every cache of trained weights keys on this."""
        from eehw import __version__
        from eehw.cache import code_hash, file_digest, package_version
        from eehw.model.data import dataset_fingerprint

        payload = {
            "version": __version__,
            "code": code_hash(
                "eehw.model.train", "eehw.model.net", "eehw.model.data", "eehw.model.npz_data", "eehw.model.splits"
            ),
            "stack": {name: package_version(name) for name in ("torch", "brevitas")},
            "seed": self.seed,
            "data": self.data,
            "dataset": dataset_fingerprint(self.data, self.base_dir),
            "model": _jsonable(self.model),
            "training": _jsonable(self.training),
        }
        backbone = self.backbone_checkpoint_path()
        if backbone is not None:
            payload["backbone_checkpoint"] = file_digest(backbone) if backbone.is_file() else "missing"
        if self.model.factory:
            payload["factory_source"] = _factory_source_hash(self)
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def factory_modules(cfg: Config) -> dict[str, Path]:
    """The factory's module and the user's own modules it imports (name -> file), looked up
    from the config's folder first, as eehw.model.net imports it."""
    from eehw.cache import user_modules

    return user_modules(cfg.model.factory.split(":", 1)[0], [cfg.base_dir])


def _factory_source_hash(cfg: Config) -> str:
    """Editing a user's model, or a module of theirs it imports, retrains it."""
    from eehw.cache import sources_hash

    files = factory_modules(cfg)
    return sources_hash(files) if files else "missing:" + cfg.model.factory


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the name of a shipped config (``digits_mlp``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise EehwError(f"config file {path} does not exist")
        return path
    shipped_path = shipped("configs") / f"{name_or_path}.yaml"
    if shipped_path.exists():
        return shipped_path
    known = ", ".join(sorted(p.stem for p in shipped("configs").glob("*.yaml")))
    raise EehwError(f"unknown config '{name_or_path}': give a .yaml path or one of: {known}")


def load_config(name_or_path: str | Path) -> Config:
    path = resolve_config_path(name_or_path)
    return parse_config(read_yaml(path, "config"), path)


def parse_config(raw: Any, source: Path) -> Config:
    ctx = YamlReader(source, "config")
    top = ctx.mapping(
        raw, "", required=("data", "model"), optional=("name", "seed", "training", "policy", "hardware", "dse")
    )
    data = ctx.mapping(top["data"], "data", required=("name",), optional=None)
    if data["name"] not in DATASETS:
        ctx.fail("data.name", f"unknown dataset '{data['name']}'; valid: {', '.join(DATASETS)}")
    return Config(
        name=str(top.get("name", source.stem)),
        seed=ctx.integer(top.get("seed", 0), "seed", minimum=0),
        data=dict(data),
        model=_parse_model(ctx, top["model"]),
        training=_parse_training(ctx, top.get("training", {})),
        policy=_parse_policy(ctx, top.get("policy", {})),
        hardware=_parse_hardware(ctx, top.get("hardware", {})),
        dse=_parse_dse(ctx, top.get("dse", {}), top["model"]),
        source=source,
    )


def _parse_model(ctx: YamlReader, raw: Any) -> ModelConfig:
    fields_ = [f.name for f in dataclasses.fields(ModelConfig)]
    m = ctx.mapping(raw, "model", required=(), optional=fields_)
    if "factory" in m:
        factory = m["factory"]
        if not isinstance(factory, str) or ":" not in factory:
            ctx.fail("model.factory", "must be 'module:function', e.g. 'my_model:make_model'")
        extra = set(m) - {"factory", "weight_bits", "act_bits", "input_bits", "logit_bits"}
        if extra:
            ctx.fail("model", f"keys {sorted(extra)} do not apply to a factory model")
        # A factory model brings its own widths; logit_bits is the output quantiser given to a
        # head that has none (eehw.model.net.complete_structure).
        logit_bits = ctx.integer(m.get("logit_bits", ModelConfig.logit_bits), "model.logit_bits", 2, 32)
        return ModelConfig(factory=factory, logit_bits=logit_bits)
    if "backbone" not in m:
        ctx.fail("model.backbone", f"missing; valid: {', '.join(b.value for b in Backbone)}")
    backbone = ctx.enum(Backbone, m["backbone"], "model.backbone")
    widths = ctx.int_list(m.get("widths"), "model.widths", minimum=1)
    if not widths:
        ctx.fail("model.widths", "give at least one block width")
    pool = ctx.int_list(m.get("pool", [1] * len(widths)), "model.pool", minimum=1)
    if len(pool) != len(widths):
        ctx.fail("model.pool", f"has {len(pool)} entries but model.widths has {len(widths)}")
    exits = _parse_exits(ctx, m.get("exits", []), len(widths), backbone)
    return ModelConfig(
        backbone=backbone,
        widths=tuple(widths),
        kernel=ctx.integer(m.get("kernel", 3), "model.kernel", minimum=1),
        pool=tuple(pool),
        weight_bits=ctx.integer(m.get("weight_bits", 4), "model.weight_bits", minimum=2, maximum=16),
        act_bits=ctx.integer(m.get("act_bits", 4), "model.act_bits", minimum=2, maximum=16),
        input_bits=ctx.integer(m.get("input_bits", 8), "model.input_bits", minimum=2, maximum=16),
        logit_bits=ctx.integer(m.get("logit_bits", 16), "model.logit_bits", minimum=4, maximum=24),
        exits=exits,
        head_channels=ctx.integer(m.get("head_channels", 8), "model.head_channels", minimum=1),
        head_pool=ctx.integer(m.get("head_pool", 2), "model.head_pool", minimum=1),
    )


def _parse_exits(ctx: YamlReader, raw: Any, n_blocks: int, backbone: Backbone) -> tuple[ExitSpec, ...]:
    if not isinstance(raw, list):
        ctx.fail("model.exits", "must be a list of {after: BLOCK, head: TYPE}")
    by_block: dict[int, HeadType] = {}
    for i, item in enumerate(raw):
        key = f"model.exits[{i}]"
        entry = ctx.mapping(item, key, required=("after",), optional=("head",))
        head = ctx.enum(HeadType, entry.get("head", "linear"), f"{key}.head")
        if backbone == Backbone.MLP and head != HeadType.LINEAR:
            ctx.fail(f"{key}.head", f"'{head.value}' needs a convolutional backbone; an mlp takes 'linear'")
        afters = range(n_blocks) if entry["after"] == "all" else [entry["after"]]
        for after in afters:
            after = ctx.integer(after, f"{key}.after", minimum=0, maximum=n_blocks - 1)
            if after in by_block:
                ctx.fail(f"{key}.after", f"block {after} already has an exit")
            by_block[after] = head
    # The last block always carries the final classifier.
    by_block.setdefault(n_blocks - 1, HeadType.LINEAR)
    return tuple(ExitSpec(after=k, head=by_block[k]) for k in sorted(by_block))


def _parse_training(ctx: YamlReader, raw: Any) -> TrainingConfig:
    fields_ = [f.name for f in dataclasses.fields(TrainingConfig)]
    t = ctx.mapping(raw, "training", required=(), optional=fields_)
    distill = None
    if t.get("distillation") is not None:
        d = ctx.mapping(t["distillation"], "training.distillation", required=(), optional=("temperature", "alpha"))
        distill = Distillation(
            temperature=ctx.number(d.get("temperature", 3.0), "training.distillation.temperature", minimum=1e-3),
            alpha=ctx.number(d.get("alpha", 0.5), "training.distillation.alpha", minimum=0.0, maximum=1.0),
        )
    weights = t.get("exit_weights")
    if weights is not None:
        if not isinstance(weights, list) or not weights:
            ctx.fail("training.exit_weights", "must be a list of numbers, one per exit")
        weights = tuple(ctx.number(w, "training.exit_weights", minimum=0.0) for w in weights)
    return TrainingConfig(
        regime=ctx.enum(Regime, t.get("regime", "e2e"), "training.regime"),
        epochs=ctx.integer(t.get("epochs", 40), "training.epochs", minimum=1),
        backbone_epochs=ctx.integer(t.get("backbone_epochs", 0), "training.backbone_epochs", minimum=0),
        batch_size=ctx.integer(t.get("batch_size", 64), "training.batch_size", minimum=1),
        lr=ctx.number(t.get("lr", 0.01), "training.lr", minimum=1e-9),
        weight_decay=ctx.number(t.get("weight_decay", 0.0), "training.weight_decay", minimum=0.0),
        exit_weights=weights,
        distillation=distill,
        backbone_checkpoint=t.get("backbone_checkpoint"),
    )


def _parse_policy(ctx: YamlReader, raw: Any) -> PolicyConfig:
    fields_ = [f.name for f in dataclasses.fields(PolicyConfig)]
    p = ctx.mapping(raw, "policy", required=(), optional=fields_)
    name = p.get("name", "margin")
    if name not in POLICIES:
        ctx.fail("policy.name", f"unknown policy '{name}'; valid: {', '.join(POLICIES)}")
    mode = ctx.enum(SelectionMode, p.get("mode", "target"), "policy.mode")
    max_cost = p.get("max_cost")
    if mode == SelectionMode.BUDGETED and max_cost is None:
        ctx.fail("policy.max_cost", "budgeted mode needs max_cost (mean cost as a fraction of the final-only network)")
    exit_ = p.get("exit")
    if mode == SelectionMode.SUBNET and exit_ is None:
        ctx.fail("policy.exit", "subnet mode needs the exit index to always leave at")
    return PolicyConfig(
        name=name,
        mode=mode,
        max_drop_pp=ctx.number(p.get("max_drop_pp", 0.5), "policy.max_drop_pp", minimum=0.0),
        max_cost=None if max_cost is None else ctx.number(max_cost, "policy.max_cost", minimum=0.0),
        exit=None if exit_ is None else ctx.integer(exit_, "policy.exit", minimum=0),
        frac_bits=ctx.integer(p.get("frac_bits", 8), "policy.frac_bits", minimum=1, maximum=24),
        calibrate=bool(p.get("calibrate", True)),
    )


def _parse_hardware(ctx: YamlReader, raw: Any) -> HardwareConfig:
    h = ctx.mapping(raw, "hardware", required=(), optional=("max_simd", "max_pe", "folding", "memory"))
    folding = []
    overrides = ctx.mapping(h.get("folding", {}), "hardware.folding", required=(), optional=None)
    for layer, lanes in overrides.items():
        key = f"hardware.folding.{layer}"
        pair = ctx.mapping(lanes, key, required=("simd", "pe"), optional=())
        folding.append(
            (
                str(layer),
                ctx.integer(pair["simd"], f"{key}.simd", minimum=1),
                ctx.integer(pair["pe"], f"{key}.pe", minimum=1),
            )
        )
    from eehw.hw.stages import MemStyle

    memory = []
    for layer, style in ctx.mapping(h.get("memory", {}), "hardware.memory", required=(), optional=None).items():
        memory.append((str(layer), ctx.enum(MemStyle, style, f"hardware.memory.{layer}").value))
    return HardwareConfig(
        max_simd=ctx.integer(h.get("max_simd", 8), "hardware.max_simd", minimum=1),
        max_pe=ctx.integer(h.get("max_pe", 4), "hardware.max_pe", minimum=1),
        folding=tuple(folding),
        memory=tuple(memory),
    )


def _ceiling_factor(ctx: YamlReader, value: Any) -> float:
    factor = ctx.number(value, "dse.worst_latency_factor")
    if not factor >= 1.0:  # also refuses nan; .inf means no ceiling
        ctx.fail("dse.worst_latency_factor", f"must be a factor >= 1 of the baseline's worst-case latency, got {value}")
    return factor


def _parse_dse(ctx: YamlReader, raw: Any, model: Any) -> DseConfig:
    d = ctx.mapping(raw, "dse", required=(), optional=("heads", "head_epochs", "scheduler", "worst_latency_factor"))
    heads = d.get("heads", [])
    if not isinstance(heads, list):
        ctx.fail("dse.heads", f"must be a list of head types ({', '.join(h.value for h in HeadType)})")
    types = tuple(dict.fromkeys(ctx.enum(HeadType, h, "dse.heads") for h in heads))
    if (
        isinstance(model, dict)
        and model.get("backbone") == Backbone.MLP.value
        and any(h != HeadType.LINEAR for h in types)
    ):
        ctx.fail("dse.heads", "an mlp backbone takes only 'linear' heads")
    if isinstance(model, dict) and model.get("factory") and types:
        ctx.fail("dse.heads", "alternative heads are built from the YAML model description; a factory model has none")
    epochs = d.get("head_epochs")
    factor = d.get("worst_latency_factor")
    scheduler = d.get("scheduler")
    if scheduler is not None and not (isinstance(scheduler, str) and scheduler.startswith("tcp://")):
        ctx.fail("dse.scheduler", f"must be a Dask scheduler address tcp://HOST:PORT, got {scheduler!r}")
    return DseConfig(
        heads=types,
        head_epochs=None if epochs is None else ctx.integer(epochs, "dse.head_epochs", minimum=1),
        scheduler=scheduler,
        worst_latency_factor=None if factor is None else _ceiling_factor(ctx, factor),
    )
