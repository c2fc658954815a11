"""Typed files that pass between the flow's commands: ``chosen.json``, what `eehw dse` chose
and `eehw synth` builds, is an ``ExitChoice`` written and read here only."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from eehw.cache import atomic_write_text
from eehw.errors import EehwError
from eehw.policies import PolicyParams

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
            raise EehwError(f"exit choice of {self.config}: {len(self.exits)} exits need as many heads and one "
                            f"threshold per early exit (got {len(self.heads)} heads, {len(self.thresholds)} "
                            f"thresholds)")

    def to_json(self) -> dict:
        return {"schema": SCHEMA_VERSION, "kind": "exit_choice", "config": self.config, "board": self.board,
                "training_hash": self.training_hash, "exits": list(self.exits), "heads": list(self.heads),
                "policy": {"name": self.policy.name.value,
                           "shifts": list(self.policy.shifts) if self.policy.shifts else None,
                           "frac_bits": self.policy.frac_bits},
                "thresholds": list(self.thresholds),
                "folding": {k: list(v) for k, v in self.folding.items()},
                "baseline_folding": {k: list(v) for k, v in self.baseline_folding.items()}}

    @classmethod
    def from_json(cls, raw: dict, where: str = "exit choice") -> ExitChoice:
        if not isinstance(raw, dict) or raw.get("kind") != "exit_choice":
            raise EehwError(f"{where} is not an exit choice written by `eehw dse`; rerun it or delete the file")
        if raw.get("schema") != SCHEMA_VERSION:
            raise EehwError(f"{where} has schema {raw.get('schema')!r}, this eehw reads {SCHEMA_VERSION}; "
                            f"rerun `eehw dse` or delete the file")
        try:
            pol = raw["policy"]
            return cls(config=str(raw["config"]), board=str(raw["board"]), training_hash=str(raw["training_hash"]),
                       exits=tuple(int(e) for e in raw["exits"]), heads=tuple(str(h) for h in raw["heads"]),
                       policy=PolicyParams(pol["name"], shifts=pol.get("shifts"), frac_bits=int(pol["frac_bits"])),
                       thresholds=tuple(None if t is None else int(t) for t in raw["thresholds"]),
                       folding={k: (int(v[0]), int(v[1])) for k, v in raw["folding"].items()},
                       baseline_folding={k: (int(v[0]), int(v[1])) for k, v in raw["baseline_folding"].items()})
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
