"""Whole-design simulation speed: the generated Verilog wrapper against the per-cycle cocotb
testbench, measured in the same run, per shipped config, and the 10k-sample backpressure run.

    .venv/bin/python benchmarks/sim_speed.py [CONFIG ...] [--samples N] [--baseline-samples M]

For each config (default: every shipped one) the early-exit top streams the test set through
both harnesses with no gaps or stalls (the per-cycle one over its first M samples, it is slow)
and prints samples/s and simulated cycles/s, over the clocked run and over the whole call
with the simulator's start-up (Verilator builds excluded: each harness is built and run once
before timing), and the ratio; the two must report the same
exit, class, confidence and handshake cycles on the shared samples. Then N samples (the test
set repeated) with random input gaps (0.3) and output stalls (0.4) through the wrapper: lost,
duplicated and mismatching results against the golden model. Not a test: it measures; a
disagreement is printed, not raised. Uses the normal cache (checkpoints and builds reused; every
timed run simulates, whatever results the cache holds).
"""

from __future__ import annotations

import argparse

import numpy as np

CONFIGS = ["digits_mlp", "digits_cnn", "mnist1d_cnn", "fmnist_cnn"]
FIELDS = ("exit_index", "prediction", "confidence", "in_cycle", "out_cycle")


def _line(name: str, sim) -> str:
    """Speed over the clocked run (reset release to last result) and over the whole call
    (simulator start-up, input and log files included)."""
    return (
        f"  {name:16} {sim.samples / sim.sim_seconds:9.1f} samples/s {sim.cycles / sim.sim_seconds:10.0f} cycles/s "
        f"clocked; {sim.samples / sim.wall_seconds:9.1f} samples/s with start-up ({sim.samples} samples, "
        f"{sim.wall_seconds:.1f} s)"
    )


def main() -> None:
    from eehw import flow
    from eehw.hw.measure import expected_outputs
    from eehw.hw.rtl.sim import simulate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=CONFIGS)
    parser.add_argument("--board", default="pynq-z2")
    parser.add_argument("--samples", type=int, default=10_000, help="samples of the backpressure run")
    parser.add_argument("--baseline-samples", type=int, default=300, help="samples through the per-cycle harness")
    args = parser.parse_args()

    for config in args.configs:
        design = flow.run(config, board=args.board, stop_after="rtl")
        rtl = design.rtl["early_exit"]
        thresholds = flow._early_exit_choice(design)[1]
        x = design.data.x_test
        x_int = design.golden.quantize_input(x)
        n = min(args.baseline_samples, len(x_int))
        for harness in ("wrapper", "cocotb"):  # build (cached) and warm up
            simulate(rtl, x_int[:2], thresholds, harness=harness)
        old = simulate(rtl, x_int[:n], thresholds, harness="cocotb")
        new_same = simulate(rtl, x_int[:n], thresholds, reuse=False)
        same = (
            all(np.array_equal(getattr(old, f), getattr(new_same, f)) for f in FIELDS) and old.cycles == new_same.cycles
        )
        new = simulate(rtl, x_int, thresholds, repeat=max(1, -(-1000 // len(x_int))), reuse=False)
        print(
            f"{config}: {rtl.top}, {new.cycles / new.samples:.0f} cycles/sample streamed, "
            f"latency bound {rtl.latency_bound}"
        )
        print(_line("per-cycle cocotb", old))
        print(_line("wrapper", new))
        ratio = (new.cycles / new.sim_seconds) / (old.cycles / old.sim_seconds)
        print(f"  ratio            {ratio:9.1f} x cycles/s clocked; identical results on {n} samples: {same}")

        repeat = -(-args.samples // len(x_int))
        low = [max(1, t // 4) for t in thresholds]  # samples leave at every exit
        bp = simulate(rtl, x_int, low, repeat=repeat, gap_p=0.3, stall_p=0.4, seed=7, reuse=False)
        exp_exit, exp_class = expected_outputs(design.golden, rtl, flow.design_policy(design), x, low)
        mismatches = int(
            ((bp.exit_index != np.tile(exp_exit, repeat)) | (bp.prediction != np.tile(exp_class, repeat))).sum()
        )
        print(
            f"  backpressure     {bp.samples} samples: {bp.missing} lost, {bp.duplicates} duplicated, "
            f"{mismatches} mismatches, error flag {bp.error_flag}, {bp.cycles} cycles in {bp.wall_seconds:.1f} s"
        )
        print(_line("wrapper, random", bp))


if __name__ == "__main__":
    main()
