"""Typed documents that pass between the flow's steps and commands, each with a schema version
and ``to_json``/``from_json``: ``Evaluation`` (``evaluation.json``), ``ExitChoice``
(``chosen.json``, what `eehw dse` chose and `eehw synth` builds) and ``Measurement`` (one
design simulated and synthesised, in the flow's report and the DSE's validation alike)."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from eehw.cache import atomic_write_text
from eehw.errors import EehwError
from eehw.policy.policies import PolicyParams

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ExitChoice:
    """One early-exit design for one board and one set of trained weights: the exits kept
    (block positions, the final one last) and their head types, the policy and each early
    exit's register value, and every weighted layer's folding (SIMD, PE), plus the folding of
    the no-exit baseline it is compared with."""

    config: str
    board: str
    training_hash: str
    exits: tuple[int, ...]
    heads: tuple[str, ...]
    policy: PolicyParams
    thresholds: tuple[int | None, ...]
    folding: dict[str, tuple[int, int]]
    baseline_folding: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.exits or len(self.heads) != len(self.exits) or len(self.thresholds) != len(self.exits) - 1:
            raise EehwError(
                f"exit choice of {self.config}: {len(self.exits)} exits need as many heads and one "
                f"threshold per early exit (got {len(self.heads)} heads, {len(self.thresholds)} "
                f"thresholds)"
            )

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "kind": "exit_choice",
            "config": self.config,
            "board": self.board,
            "training_hash": self.training_hash,
            "exits": list(self.exits),
            "heads": list(self.heads),
            "policy": {
                "name": self.policy.name.value,
                "shifts": list(self.policy.shifts) if self.policy.shifts else None,
                "frac_bits": self.policy.frac_bits,
            },
            "thresholds": list(self.thresholds),
            "folding": {k: list(v) for k, v in self.folding.items()},
            "baseline_folding": {k: list(v) for k, v in self.baseline_folding.items()},
        }

    @classmethod
    def from_json(cls, raw: dict, where: str = "exit choice") -> ExitChoice:
        if not isinstance(raw, dict) or raw.get("kind") != "exit_choice":
            raise EehwError(f"{where} is not an exit choice written by `eehw dse`; rerun it or delete the file")
        if raw.get("schema") != SCHEMA_VERSION:
            raise EehwError(
                f"{where} has schema {raw.get('schema')!r}, this eehw reads {SCHEMA_VERSION}; "
                f"rerun `eehw dse` or delete the file"
            )
        try:
            pol = raw["policy"]
            return cls(
                config=str(raw["config"]),
                board=str(raw["board"]),
                training_hash=str(raw["training_hash"]),
                exits=tuple(int(e) for e in raw["exits"]),
                heads=tuple(str(h) for h in raw["heads"]),
                policy=PolicyParams(pol["name"], shifts=pol.get("shifts"), frac_bits=int(pol["frac_bits"])),
                thresholds=tuple(None if t is None else int(t) for t in raw["thresholds"]),
                folding={k: (int(v[0]), int(v[1])) for k, v in raw["folding"].items()},
                baseline_folding={k: (int(v[0]), int(v[1])) for k, v in raw["baseline_folding"].items()},
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise EehwError(f"{where} lacks or mangles {exc}; rerun `eehw dse` or delete the file") from None

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ExitChoice:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise EehwError(f"{path} cannot be read ({type(exc).__name__}); rerun `eehw dse` or delete it") from None
        return cls.from_json(raw, str(path))


def _checked(raw, kind: str, where: str, remedy: str) -> dict:
    """``raw`` if it is a document of ``kind`` at this schema, else one line naming ``remedy``."""
    if not isinstance(raw, dict) or raw.get("kind") != kind:
        raise EehwError(f"{where} is not {kind.replace('_', ' ')} written by eehw; {remedy}")
    if raw.get("schema") != SCHEMA_VERSION:
        raise EehwError(f"{where} has schema {raw.get('schema')!r}, this eehw reads {SCHEMA_VERSION}; {remedy}")
    return raw


@dataclass(frozen=True)
class ExitStats:
    """One candidate exit on the test set (``val_exit_rate`` on validation) under the chosen thresholds."""

    position: int
    head: str
    accuracy: float
    exit_rate: float
    val_exit_rate: float
    exited_accuracy: float | None
    threshold: int | float | None  # None: disabled (and for the final exit)
    cost_ratio: float
    macs_block: int
    macs_head: int
    logit_exp: int


@dataclass(frozen=True)
class Evaluation:
    """What ``eehw evaluate`` measured of a trained design with the golden model: the policy and
    thresholds chosen on validation, and per-exit and overall figures on the test set.
    ``evaluation.json`` is this document."""

    config: str
    dataset: str
    samples: dict[str, int]  # train / val / test
    policy: PolicyParams
    mode: str  # threshold selection mode
    max_drop_pp: float | None
    accuracy: float
    final_accuracy: float
    mean_cost_ratio: float
    oracle_cost_ratio: float
    oracle_accuracy: float
    overthinking: float
    golden_mismatches: int
    golden_first_mismatch: dict | None  # {"sample", "exit"} of the first Brevitas disagreement
    golden_checked: dict[str, int]  # samples, exits
    exits: tuple[ExitStats, ...]
    train_seconds: float
    checkpoint_cached: bool

    def to_json(self) -> dict:
        p = self.policy
        return {
            "schema": SCHEMA_VERSION,
            "kind": "evaluation",
            "config": self.config,
            "dataset": self.dataset,
            "samples": dict(self.samples),
            "policy": {
                "name": p.name.value,
                "mode": self.mode,
                "max_drop_pp": self.max_drop_pp,
                "temperatures": list(p.temperatures) if p.temperatures else None,
                "shifts": list(p.shifts) if p.shifts else None,
                "frac_bits": p.frac_bits,
            },
            "accuracy": self.accuracy,
            "final_accuracy": self.final_accuracy,
            "mean_cost_ratio": self.mean_cost_ratio,
            "oracle_cost_ratio": self.oracle_cost_ratio,
            "oracle_accuracy": self.oracle_accuracy,
            "overthinking": self.overthinking,
            "golden_mismatches": self.golden_mismatches,
            "golden_first_mismatch": self.golden_first_mismatch,
            "golden_checked": dict(self.golden_checked),
            "exits": [asdict(e) for e in self.exits],
            "train_seconds": self.train_seconds,
            "checkpoint_cached": self.checkpoint_cached,
        }

    @classmethod
    def from_json(cls, raw: dict, where: str = "evaluation") -> Evaluation:
        raw = _checked(raw, "evaluation", where, "rerun `eehw evaluate`")
        try:
            pol = raw["policy"]
            return cls(
                config=raw["config"],
                dataset=raw["dataset"],
                samples=dict(raw["samples"]),
                policy=PolicyParams(
                    pol["name"],
                    temperatures=pol.get("temperatures"),
                    shifts=pol.get("shifts"),
                    frac_bits=int(pol["frac_bits"]),
                ),
                mode=pol["mode"],
                max_drop_pp=pol.get("max_drop_pp"),
                exits=tuple(ExitStats(**e) for e in raw["exits"]),
                **{
                    k: raw[k]
                    for k in (
                        "accuracy",
                        "final_accuracy",
                        "mean_cost_ratio",
                        "oracle_cost_ratio",
                        "oracle_accuracy",
                        "overthinking",
                        "golden_mismatches",
                        "golden_first_mismatch",
                        "golden_checked",
                        "train_seconds",
                        "checkpoint_cached",
                    )
                },
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EehwError(f"{where} lacks or mangles {exc}; rerun `eehw evaluate`") from None

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")


@dataclass(frozen=True)
class Measurement:
    """One generated design as simulated (cycle-accurate, every test sample, each result checked
    against the golden model) and, once synthesised, its resources. The flow's report and the
    DSE's validation both hold these, made by the same functions (eehw.hw.measure)."""

    top: str
    latency_bound: int  # the stated worst case, cycles
    bit_exact: dict  # merged golden checks: samples, mismatches, lost, duplicated, first_mismatch
    latency_cycles: dict  # one sample at a time: mean, p50, p99, max, per exit
    latency_cycles_raw: np.ndarray  # per sample, one at a time
    latency_under_load_cycles: dict  # back to back: mean, max
    worst_case_latency_cycles: int  # every sample forced to the final exit, one at a time
    worst_case_samples: int
    throughput_samples_per_cycle: float
    simulated_cycles: int
    simulation_seconds: float
    predictions: np.ndarray  # class per sample, back-to-back run
    exit_index: np.ndarray  # exit per sample, back-to-back run
    error_flag: bool
    resources: dict | None = None  # eehw.hw.measure.resources: totals, per block, fit, timing
    synthesis_seconds: float | None = None

    ARRAYS = ("latency_cycles_raw", "predictions", "exit_index")

    @property
    def exit_rates(self) -> list[float]:
        taken = self.exit_index[self.exit_index >= 0]
        n_exits = len(self.latency_cycles["per_exit"])  # eehw.hw.measure.latency_stats: one entry per exit
        return [float(x) for x in np.bincount(taken, minlength=n_exits) / max(1, len(self.exit_index))]

    def with_resources(self, resources: dict, seconds: float | None = None) -> Measurement:
        return replace(self, resources=resources, synthesis_seconds=seconds)

    def to_json(self) -> dict:
        out = {"schema": SCHEMA_VERSION, "kind": "measurement"}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = np.asarray(value).tolist() if f.name in self.ARRAYS else value
        out["exit_rates"] = self.exit_rates
        return out

    @classmethod
    def from_json(cls, raw: dict, where: str = "measurement") -> Measurement:
        raw = _checked(raw, "measurement", where, "measure the design again")
        try:
            values = {f.name: raw[f.name] for f in fields(cls) if f.name in raw or f.default is MISSING}
            for name in cls.ARRAYS:
                values[name] = np.asarray(values[name], dtype=np.int64)
            return cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise EehwError(f"{where} lacks or mangles {exc}; measure the design again") from None
