"""Measurements of a generated design: bit-exactness against the golden model, latency and
throughput from simulation cycles, resources from synthesis."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from eehw.artefacts import Measurement
from eehw.board import Board, Resources
from eehw.dse.executor import default_workers
from eehw.errors import EehwError, VerificationError
from eehw.hw.rtl.design import RtlDesign, hdl_sources
from eehw.hw.rtl.sim import SimResult, simulate
from eehw.hw.rtl.verilate import build_wrapper
from eehw.hw.tools.fmax import critical_path, timing_summary
from eehw.hw.tools.yosys import SynthResult, synthesize
from eehw.model.golden import GoldenModel
from eehw.policy.policies import PolicyParams, decide


def expected_outputs(
    golden: GoldenModel,
    rtl: RtlDesign,
    params: PolicyParams,
    x: np.ndarray,
    thresholds: list[int | None],
    logits: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(exit index within the design, class) the golden model and Python policy give;
    ``logits``: ``golden.forward(x)`` when the caller has it already."""
    logits = golden.forward(x) if logits is None else logits
    keep = golden.exit_indices(rtl.plan.exits)
    z = [logits[k] for k in keep]
    return decide(params.restricted(keep), z, [golden.logit_exps[k] for k in keep], list(thresholds))


def latency_stats(sim: SimResult, n_exits: int) -> dict:
    lat = sim.latency
    per_exit = []
    for k in range(n_exits):
        sel = lat[sim.exit_index == k]
        per_exit.append(
            {
                "exit": k,
                "samples": int(sel.size),
                "mean": float(sel.mean()) if sel.size else None,
                "max": int(sel.max()) if sel.size else None,
            }
        )
    return {
        "mean": float(lat.mean()),
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "max": int(lat.max()),
        "min": int(lat.min()),
        "per_exit": per_exit,
    }


def check_against_golden(sim: SimResult, expected_exit: np.ndarray, expected_class: np.ndarray) -> dict:
    n = len(expected_exit)
    exit_ok = sim.exit_index[:n] == expected_exit
    class_ok = sim.prediction[:n] == expected_class
    bad = ~(exit_ok & class_ok)
    first = None
    if bad.any():
        i = int(np.argmax(bad))
        first = {
            "sample": i,
            "expected_exit": int(expected_exit[i]),
            "expected_class": int(expected_class[i]),
            "exit": int(sim.exit_index[i]),
            "class": int(sim.prediction[i]),
        }
    return {
        "samples": int(n),
        "mismatches": int(bad.sum()),
        "exit_mismatches": int((~exit_ok).sum()),
        "class_mismatches": int((~class_ok).sum()),
        "lost": sim.missing,
        "duplicated": sim.duplicates,
        "first_mismatch": first,
    }


def _merge_checks(checks: dict[str, dict]) -> dict:
    """Counts summed over the runs; the first mismatch of the first run that has one, named."""
    merged = {"samples": next(iter(checks.values()))["samples"]}
    for key in ("mismatches", "exit_mismatches", "class_mismatches", "lost", "duplicated"):
        merged[key] = sum(c[key] for c in checks.values())
    merged["first_mismatch"] = next(
        ({"run": run, **c["first_mismatch"]} for run, c in checks.items() if c["first_mismatch"]), None
    )
    return merged


def run_design(
    golden: GoldenModel,
    rtl: RtlDesign,
    params: PolicyParams,
    x_test: np.ndarray,
    thresholds: list[int | None],
    workers: int | None = None,
) -> Measurement:
    """Three simulations of the whole design, every result compared with the golden model:
    the test set back to back (throughput), the test set one sample at a time (each sample's
    latency on an idle pipeline, so queueing does not blur the exit distribution), and the test
    set one at a time with every early exit disabled (every sample on the worst-case path, whose
    longest latency is checked against the stated bound). A design without early exits has
    one path, so its one-at-a-time run is also its worst-case run."""
    return run_designs(golden, {"design": (rtl, params, thresholds)}, x_test, workers)["design"]


def run_designs(
    golden: GoldenModel,
    designs: dict[str, tuple[RtlDesign, PolicyParams, list[int | None]]],
    x_test: np.ndarray,
    workers: int | None = None,
) -> dict[str, Measurement]:
    """``run_design`` for several designs (name -> (rtl, params, thresholds)), their Verilator
    builds and simulations spread over ``workers`` threads (default: one per core); each
    simulation is a process of its own, so the threads only wait."""
    x_int = golden.quantize_input(x_test)
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        list(pool.map(build_wrapper, [rtl for rtl, _, _ in designs.values()]))
        runs = {}
        for name, (rtl, _, thresholds) in designs.items():
            runs[name] = {
                "stream": pool.submit(simulate, rtl, x_int, thresholds),
                "isolated": pool.submit(simulate, rtl, x_int, thresholds, one_at_a_time=True),
            }
            if thresholds:
                runs[name]["worst"] = pool.submit(simulate, rtl, x_int, [None] * len(thresholds), one_at_a_time=True)
        done = {name: {run: f.result() for run, f in futures.items()} for name, futures in runs.items()}
    logits = golden.forward(x_test)  # once for every design and run (fmnist_cnn: 10 s a pass)
    return {
        name: _measured(golden, rtl, params, x_test, thresholds, done[name], logits)
        for name, (rtl, params, thresholds) in designs.items()
    }


def _measured(golden, rtl, params, x_test, thresholds, sims: dict, logits) -> Measurement:
    exp_exit, exp_class = expected_outputs(golden, rtl, params, x_test, thresholds, logits)
    stream, isolated = sims["stream"], sims["isolated"]
    checks = {
        "stream": check_against_golden(stream, exp_exit, exp_class),
        "isolated": check_against_golden(isolated, exp_exit, exp_class),
    }
    worst = sims.get("worst", isolated)
    if "worst" in sims:
        final_exit, final_class = expected_outputs(golden, rtl, params, x_test, [None] * len(thresholds), logits)
        checks["final exit only"] = check_against_golden(worst, final_exit, final_class)
    return Measurement(
        top=rtl.top,
        latency_bound=rtl.latency_bound,
        bit_exact=_merge_checks(checks),
        latency_cycles=latency_stats(isolated, len(rtl.plan.exits)),
        latency_cycles_raw=np.asarray(isolated.latency, dtype=np.int64),
        latency_under_load_cycles={"mean": float(stream.latency.mean()), "max": int(stream.latency.max())},
        worst_case_latency_cycles=int(worst.latency[worst.latency >= 0].max(initial=0)),
        worst_case_samples=int(len(x_test)),
        throughput_samples_per_cycle=float(stream.throughput()),
        simulated_cycles=int(sum(r.cycles for r in sims.values())),
        simulation_seconds=float(sum(r.wall_seconds for r in sims.values())),
        predictions=np.asarray(stream.prediction, dtype=np.int64),
        exit_index=np.asarray(stream.exit_index, dtype=np.int64),
        error_flag=bool(any(r.error_flag for r in sims.values())),
    )


def enforce(kind: str, measured: Measurement) -> None:
    """Stop the flow (VerificationError) when the simulated design is not the one the report
    would describe: a result that differs from the golden model, a lost or duplicated sample, a
    protocol error flag, or a worst case above the stated latency bound."""
    level = f"rtl {kind.replace('_', '-')}"
    check = measured.bit_exact
    first = check["first_mismatch"]
    if first:
        raise VerificationError(
            level,
            f"{check['mismatches']} results differ from the golden model; first: test "
            f"sample {first['sample']} ({first['run']} run) left at exit "
            f"{first['exit']} with class {first['class']}, the golden model gives exit "
            f"{first['expected_exit']} class {first['expected_class']}",
        )
    if check["lost"] or check["duplicated"]:
        raise VerificationError(
            level, f"{check['lost']} samples lost and {check['duplicated']} duplicated of {check['samples']}"
        )
    if measured.error_flag:
        raise VerificationError(level, "a block raised its protocol error flag (a sample's beats arrived broken)")
    worst, bound = measured.worst_case_latency_cycles, measured.latency_bound
    if worst > bound:
        raise VerificationError(
            level,
            f"measured worst-case latency {worst} cycles (every test sample forced to "
            f"the final exit) exceeds the stated bound {bound}",
        )


def resources(rtl: RtlDesign, board: Board, workers: int | None = None, timing: bool = False) -> dict:
    """Yosys counts per block and head (out of context) and for the whole top."""
    return resources_of({"design": rtl}, board, workers, timing)["design"]


def resources_of(
    designs: dict[str, RtlDesign], board: Board, workers: int | None = None, timing: bool = True
) -> dict[str, dict]:
    """``resources`` of several designs, the Yosys runs (one process each, cached by content)
    spread over ``workers`` threads (default: one per core), the largest first; with ``timing``
    also each top's estimated critical path (eehw.hw.tools.fmax)."""
    library = hdl_sources("block")
    jobs = {}
    for name, rtl in designs.items():
        for block in list(rtl.plan.blocks) + [rtl.plan.heads[k] for k in rtl.plan.exits]:
            jobs[name, block.name] = (library + [rtl.out_dir / f"{block.module}.v"], block.module)
        jobs[name, None] = (list(rtl.sources), rtl.top)
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        paths = (
            {
                name: pool.submit(critical_path, list(rtl.sources), rtl.top, board.family)
                for name, rtl in designs.items()
            }
            if timing
            else {}
        )
        # the top as a whole design, each block and head as a unit (as the DSE characterises them)
        futures = {
            key: pool.submit(synthesize, files, top, board.family, key[1] is not None)
            for key, (files, top) in sorted(jobs.items(), key=lambda kv: kv[0][1] is not None)
        }
        done: dict = {key: f.result() for key, f in futures.items()}
        paths = {name: _estimate(f) for name, f in paths.items()}
    out = {}
    for name in designs:
        total: SynthResult = done[name, None]
        used = Resources(LUT=total.LUT, FF=total.FF, BRAM18=total.BRAM18, DSP=total.DSP)
        overruns = used.overruns(board.budget)
        per_block = {block: r.as_dict() for (n, block), r in done.items() if n == name and block is not None}
        out[name] = {
            **total.as_dict(),
            "per_block": per_block,
            "fits": not overruns,
            "overruns": [str(o) for o in overruns],
        }
        if isinstance(paths.get(name), str):
            out[name]["timing"] = {"unavailable": paths[name], "warning": None}
        elif name in paths:
            out[name]["timing"] = timing_summary(paths[name], board.clock_mhz)
    return out


def _estimate(future) -> dict | str:
    """The critical path, or why Yosys could not estimate it: the estimate is a hint next to
    the measured figures, so its failure (Yosys 0.23's sta aborts on some large netlists) is
    reported, not fatal."""
    try:
        return future.result()
    except EehwError as exc:
        return str(exc)
