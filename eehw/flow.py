"""The flow as an ordered list of named steps over one Design (FINN's builder, in small).

Data moves one way: config -> data -> trained Brevitas model -> golden integer model ->
evaluation (exit statistics, thresholds) -> hardware steps (later issues).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from eehw.board import Board, load_board
from eehw.config import Config, load_config
from eehw.data import Dataset, load_dataset
from eehw.golden import GoldenModel
from eehw.paths import build_dir
from eehw.train import TrainedModel, train


@dataclass
class Design:
    cfg: Config
    board: Board | None
    force_train: bool = False
    data: Dataset | None = None
    trained: TrainedModel | None = None
    golden: GoldenModel | None = None
    evaluation: dict | None = None
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        board = self.board.name if self.board else "any"
        return build_dir() / board / self.cfg.name


def step_data(d: Design) -> None:
    d.data = load_dataset(d.cfg.data, seed=d.cfg.seed, base_dir=d.cfg.base_dir)


def step_train(d: Design) -> None:
    d.trained = train(d.cfg, d.data, force=d.force_train)


def step_golden(d: Design) -> None:
    from eehw.export import export_golden

    d.golden = export_golden(d.trained.model, torch.from_numpy(d.data.x_train[:2]))


def step_evaluate(d: Design) -> None:
    from eehw.evaluate import evaluate

    d.evaluation = evaluate(d.cfg, d.data, d.trained, d.golden)
    d.out_dir.mkdir(parents=True, exist_ok=True)
    path = d.out_dir / "evaluation.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(d.evaluation, indent=2))
    tmp.replace(path)


STEPS: list[tuple[str, Callable[[Design], None]]] = [
    ("data", step_data),
    ("train", step_train),
    ("golden", step_golden),
    ("evaluate", step_evaluate),
]

# Steps of the hardware issues, named here so the flow can say where it stops.
NOT_BUILT_YET = ["rtl (Verilog generation, cocotb/Verilator simulation, Yosys synthesis)", "report"]


def run(config: str | Path, board: str | None = None, stop_after: str | None = None,
        force_train: bool = False) -> Design:
    design = Design(load_config(config), load_board(board) if board else None, force_train=force_train)
    for name, step in STEPS:
        start = time.perf_counter()
        step(design)
        design.seconds[name] = time.perf_counter() - start
        if name == stop_after:
            return design
    design.notes.append(
        f"stopped after evaluation: the next step, {NOT_BUILT_YET[0]}, is not built yet; "
        f"evaluation written to {design.out_dir / 'evaluation.json'}")
    return design
