"""The flow as an ordered list of named steps over one Design (FINN's builder, in small).

Data moves one way: config -> data -> trained Brevitas model -> golden integer model ->
evaluation (exit statistics, thresholds) -> hardware steps (later issues).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from eehw.artefacts import Evaluation, ExitStats, Measurement
from eehw.board import Board, load_board
from eehw.config import Config, load_config
from eehw.errors import EehwError, VerificationError
from eehw.model.data import Dataset, load_dataset
from eehw.model.golden import GoldenModel
from eehw.model.train import TrainedModel, train
from eehw.paths import build_dir


@dataclass
class Design:
    cfg: Config
    board: Board | None
    force_train: bool = False
    data: Dataset | None = None
    trained: TrainedModel | None = None
    golden: GoldenModel | None = None
    evaluation: Evaluation | None = None
    rtl: dict = field(default_factory=dict)  # "early_exit" / "baseline" -> RtlDesign
    measured: dict = field(default_factory=dict)  # same keys -> Measurement (simulation, then synthesis)
    hls: dict | None = None  # hls4ml projects, C-sim chain check, multi-exit top, vendor figures
    dse_choice: object = None  # the ExitChoice `eehw dse` made for this config, board and weights, if any
    report_paths: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    report: dict | None = None

    @property
    def out_dir(self) -> Path:
        board = self.board.name if self.board else "any"
        return build_dir() / board / self.cfg.name


def step_data(d: Design) -> None:
    d.data = load_dataset(d.cfg.data, seed=d.cfg.seed, base_dir=d.cfg.base_dir)


def step_train(d: Design) -> None:
    d.trained = train(d.cfg, d.data, force=d.force_train)
    d.dse_choice = _load_dse_choice(d)
    heads = _chosen_heads(d)
    if heads:
        # `eehw dse` chose alternative head types: the same backbone with those heads (their
        # IC-only checkpoints are cached by the DSE; trained here if missing).
        from eehw.model.export import export_golden
        from eehw.model.head_variants import assemble, train_alternatives

        golden = export_golden(d.trained.model, torch.from_numpy(d.data.x_train[:2]))
        choices = train_alternatives(d.cfg, d.data, d.trained, golden)
        d.cfg, d.trained = assemble(choices, d.data, heads)


def step_golden(d: Design) -> None:
    from eehw.model.export import export_golden

    d.golden = export_golden(d.trained.model, torch.from_numpy(d.data.x_train[:2]))


def step_evaluate(d: Design) -> None:
    from eehw.policy.evaluate import evaluate

    ev = d.evaluation = evaluate(d.cfg, d.data, d.trained, d.golden)
    d.out_dir.mkdir(parents=True, exist_ok=True)
    ev.save(d.out_dir / "evaluation.json")
    first = ev.golden_first_mismatch
    if first:
        raise VerificationError(
            "golden vs Brevitas",
            f"{ev.golden_mismatches} of {ev.golden_checked['samples']} "
            f"test samples differ; first: test sample {first['sample']} at exit {first['exit']}",
        )


def _load_dse_choice(d: Design):
    """The ExitChoice `eehw dse` made for this config, board and trained weights, if any."""
    from eehw.artefacts import ExitChoice

    if d.board is None:
        return None
    path = d.out_dir / "dse" / "chosen.json"
    if not path.exists():
        return None
    choice = ExitChoice.load(path)
    if choice.training_hash != d.cfg.training_hash() or choice.board != d.board.name:
        return None
    return choice


def _chosen_heads(d: Design) -> dict[int, str]:
    """Head types the DSE chose that differ from the config's (exit position -> type)."""
    from eehw.model.head_variants import own_heads

    if not d.dse_choice:
        return {}
    own = own_heads(d.cfg)
    return {p: h for p, h in zip(d.dse_choice.exits, d.dse_choice.heads) if h != own.get(p)}


def design_policy(d: Design):
    """The decision policy the built design runs: the DSE's choice, else the evaluation's."""
    return d.dse_choice.policy if d.dse_choice else d.evaluation.policy


#: Without a DSE choice the flow builds an early exit only if at least this fraction of the
#: validation samples leaves there: a head no sample uses costs LUTs and buys nothing.
MIN_EXIT_RATE = 0.01


def _early_exit_choice(d: Design) -> tuple[list[int], list[int | None]]:
    """The early exits to build and their register values: the DSE's choice if any, else
    those the thresholds enable that at least MIN_EXIT_RATE of validation samples use."""
    if d.dse_choice:
        return list(d.dse_choice.exits[:-1]), list(d.dse_choice.thresholds)
    dropped = dropped_exits(d)
    kept = [e for e in d.evaluation.exits[:-1] if e not in dropped]
    return [e.position for e in kept], [e.threshold for e in kept]


def dropped_exits(d: Design) -> list[ExitStats]:
    """Candidate early exits the default design leaves out (none when the DSE chose)."""
    if d.dse_choice:
        return []
    return [e for e in d.evaluation.exits[:-1] if e.threshold is None or e.val_exit_rate < MIN_EXIT_RATE]


def step_rtl(d: Design) -> None:
    from eehw.hw.plan import paced_foldings, plan_design
    from eehw.hw.rtl.design import generate
    from eehw.hw.stages import Folding, MemStyle

    hw = d.cfg.hardware
    mem_styles = {layer: MemStyle(style) for layer, style in hw.memory}
    foldings = {name: Folding(simd, pe) for name, simd, pe in hw.folding}
    plan_design(d.golden, d.cfg.name, [], foldings, hw.max_simd, hw.max_pe, mem_styles)  # refuses unknown names
    choice = d.dse_choice
    if choice:  # `eehw dse` chose every layer's folding for this board, and the baseline's at its best
        foldings = {name: Folding(*lanes) for name, lanes in choice.folding.items()}
        base_foldings = {name: Folding(*lanes) for name, lanes in choice.baseline_folding.items()}
    else:  # every layer at the slowest block's pace, unless the config folds it
        foldings = base_foldings = {**paced_foldings(d.golden, hw.max_simd, hw.max_pe, mem_styles), **foldings}
    positions, _ = _early_exit_choice(d)
    params = design_policy(d)
    for kind, exits in (("early_exit", positions), ("baseline", [])):
        name = d.cfg.name if kind == "early_exit" else f"{d.cfg.name}_baseline"
        plan = plan_design(
            d.golden,
            name,
            exits,
            foldings if kind == "early_exit" else base_foldings,
            hw.max_simd,
            hw.max_pe,
            mem_styles,
        )
        d.rtl[kind] = generate(
            plan, params, d.out_dir / ("rtl" if kind == "early_exit" else "rtl_baseline"), d.golden.exits
        )


def step_hls(d: Design) -> None:
    """hls4ml project per block (io_stream: the block design connects them by AXI-Stream), the
    C-sim chain checked against the golden model on the whole test set, the multi-exit top, and
    the vendor flow when Vitis HLS and Vivado are installed."""
    from eehw.hw.hls.build import build_hls_projects
    from eehw.hw.hls.chain import chain_check
    from eehw.hw.hls.settings import settings_from_plan
    from eehw.hw.hls.top import TopDesign, ip_name, write_hls_top
    from eehw.hw.rtl.axi_ip import write_rtl_ip
    from eehw.hw.tools import vendor

    # The IPs fold as the simulated RTL does: reuse factors from its SIMD x PE lanes.
    settings = settings_from_plan(d.golden, d.rtl["early_exit"].plan)
    projects = build_hls_projects(d.trained, d.golden, d.board, d.out_dir, settings=settings)
    mismatches, first = chain_check(projects, d.golden, d.data.x_test)
    if first:
        bad = ", ".join(f"{name}: {n}" for name, n in mismatches.items() if n)
        raise VerificationError(
            "hls4ml C-sim",
            f"differs from the golden model ({bad} samples); first: test sample "
            f"{first['sample']} at {first['block']}; projects are in {d.out_dir / 'hls'}",
        )
    rtl = d.rtl["early_exit"]
    _, thresholds = _early_exit_choice(d)
    top = TopDesign.from_golden(d.cfg.name, d.golden, rtl.plan.exits, design_policy(d), rtl.decision, thresholds)
    files = write_hls_top(top, d.board, d.out_dir / "hls_top")
    # The alternative accelerator: the simulated RTL itself, packaged as one IP.
    rtl_ip = write_rtl_ip(rtl, top, d.board, d.out_dir / "rtl_ip")
    tools = vendor.detect()
    note = vendor.absence_note(tools)
    if note:
        print(note)
        vendor_figures = {"skipped": note}
    else:
        kept = {ip_name(n) for n in top.blocks + top.heads}
        overlay = vendor.build_overlay(
            {ip_name(p.name): p.project_dir for p in projects if ip_name(p.name) in kept}, files, tools
        )
        vendor_figures = overlay.summary()
    d.hls = {
        "backend": projects[0].backend,
        "samples": int(len(d.data.x_test)),
        "mismatches": mismatches,
        "projects": [p.summary() for p in projects],
        "top": {"tcl": str(files.tcl), "register_map": str(files.register_map), "ips": list(files.ips)},
        "rtl_top": {"tcl": str(rtl_ip.tcl), "register_map": str(rtl_ip.register_map), "ip": rtl_ip.top},
        "vendor": vendor_figures,
    }


def step_simulate(d: Design) -> None:
    from eehw.hw.measure import enforce, run_designs

    _, thresholds = _early_exit_choice(d)
    params = design_policy(d)
    d.measured = run_designs(
        d.golden,
        {kind: (rtl, params, thresholds if kind == "early_exit" else []) for kind, rtl in d.rtl.items()},
        d.data.x_test,
    )
    for kind in d.rtl:
        enforce(kind, d.measured[kind])


def step_synthesise(d: Design) -> None:
    from eehw.hw.measure import resources_of

    for kind, figures in resources_of(d.rtl, d.board).items():
        d.measured[kind] = d.measured[kind].with_resources(figures)
        timing = figures["timing"]
        if timing.get("unavailable"):
            print(f"eehw: note: {kind.replace('_', '-')} design: no timing estimate ({timing['unavailable']})")
        elif timing["warning"]:
            print(f"eehw: warning: {kind.replace('_', '-')} design: {timing['warning']}")


def step_report(d: Design) -> None:
    from eehw.model.head_variants import own_heads
    from eehw.report.synth import write_reports

    ee, base = d.measured["early_exit"], d.measured["baseline"]
    y = d.data.y_test
    kept = d.golden.exit_indices(d.rtl["early_exit"].plan.exits)
    exits = []
    _, thresholds = _early_exit_choice(d)  # the config's, or those `eehw dse` chose
    policy = design_policy(d).name.value
    for k, idx in enumerate(kept):
        e = d.evaluation.exits[idx]
        leaves = ee.exit_index == k
        exits.append(
            {
                "position": e.position,
                "head": own_heads(d.cfg).get(e.position),
                "policy": policy,
                "threshold": thresholds[k] if k < len(kept) - 1 else None,
                "exit_rate": float(leaves.mean()),
                "accuracy": e.accuracy,
                "exited_accuracy": float((ee.predictions[leaves] == y[leaves]).mean()) if leaves.any() else None,
            }
        )

    def summary(m: Measurement) -> dict:
        lat = dict(m.latency_cycles)
        lat["bound"] = m.latency_bound
        lat["worst_case_measured"] = m.worst_case_latency_cycles
        return {
            "latency_cycles": lat,
            "latency_under_load_cycles": m.latency_under_load_cycles,
            "throughput_samples_per_cycle": m.throughput_samples_per_cycle,
            "resources": m.resources,
            "bit_exact": m.bit_exact,
            "simulated_cycles": m.simulated_cycles,
            "simulation_seconds": m.simulation_seconds,
            "top": m.top,
        }

    report = {
        "design": d.cfg.name,
        "board": d.board.name,
        "part": d.board.part,
        "clock_mhz": d.board.clock_mhz,
        "dataset": d.data.name,
        "accuracy": {
            "early_exit": float((ee.predictions == y).mean()),
            "final_only": float((base.predictions == y).mean()),
        },
        "exits": exits,
        "dropped_exits": [
            {
                "position": e.position,
                "head": e.head,
                "val_exit_rate": e.val_exit_rate,
                "reason": "disabled by the threshold selection"
                if e.threshold is None
                else f"fewer than {MIN_EXIT_RATE:.0%} of validation samples leave there",
            }
            for e in dropped_exits(d)
        ],
        "design_source": "eehw dse" if d.dse_choice else "config + threshold selection",
        **summary(ee),
        "fits": ee.resources["fits"],
        "baseline": summary(base),
        "evaluation": {
            k: getattr(d.evaluation, k) for k in ("mean_cost_ratio", "oracle_cost_ratio", "golden_mismatches")
        },
        "hls": d.hls,
        "seconds_per_step": d.seconds,
    }
    latencies = {"early exit": ee.latency_cycles_raw, "baseline": base.latency_cycles_raw}
    report["status"] = "ok" if ee.resources["fits"] else "over budget"
    d.report_paths = write_reports(report, d.out_dir, latencies)
    d.report = report
    if not ee.resources["fits"]:
        # The figures stay in the report (they say what to fold); the run is not a design to deploy.
        raise EehwError(
            f"{d.cfg.name}: the early-exit design does not fit {d.board.name} "
            f"({'; '.join(ee.resources['overruns'])}); see {d.report_paths[1]}. Run "
            f"`eehw dse {d.cfg.name} --board {d.board.name}` to fold it within the board, or lower "
            f"hardware.max_simd / max_pe"
        )


STEPS: list[tuple[str, Callable[[Design], None]]] = [
    ("data", step_data),
    ("train", step_train),
    ("golden", step_golden),
    ("evaluate", step_evaluate),
    ("rtl", step_rtl),
    ("hls", step_hls),
    ("simulate", step_simulate),
    ("synthesise", step_synthesise),
    ("report", step_report),
]

# Steps that need a board: without one the flow stops after evaluation.
BOARD_STEPS = {"rtl", "hls", "simulate", "synthesise", "report"}


def run(
    config: str | Path, board: str | None = None, stop_after: str | None = None, force_train: bool = False
) -> Design:
    design = Design(load_config(config), load_board(board) if board else None, force_train=force_train)
    for name, step in STEPS:
        if name in BOARD_STEPS and design.board is None:
            break
        start = time.perf_counter()
        try:
            step(design)
        except VerificationError as exc:
            if design.board is not None:
                from eehw.report.synth import write_failed_report

                design.report_paths = write_failed_report(design.out_dir, design.cfg.name, design.board.name, name, exc)
            raise
        design.seconds[name] = time.perf_counter() - start
        if name == stop_after:
            break
    return design
