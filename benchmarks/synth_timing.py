"""Time `make synth` cold and warm, and simulation speed, and print early-exit vs baseline ratios.

    .venv/bin/python benchmarks/synth_timing.py [CONFIG] [--board pynq-z2]

Cold: empty cache and build folders (training, Verilator builds and Yosys runs all happen).
Warm: the same command again (checkpoint, Verilator builds and Yosys results are reused).
Simulation speed is samples per second of wall time through the early-exit top on the test
set, repeated to at least 5,000 samples. Not a test: it measures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _synth(config: str, board: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "eehw.cli", "synth", config, "--board", board],
        check=True,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="digits_mlp")
    parser.add_argument("--board", default="pynq-z2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eehw-bench-") as tmp:
        env = {**os.environ, "EEHW_CACHE_DIR": f"{tmp}/cache", "EEHW_BUILD_DIR": f"{tmp}/build"}
        cold = _synth(args.config, args.board, env)
        warm = _synth(args.config, args.board, env)
        report = json.loads((Path(tmp) / "build" / args.board / args.config / "report.json").read_text())

        sys.path.insert(0, str(ROOT))
        os.environ.update(env)
        from eehw import flow
        from eehw.hw.rtl.sim import simulate

        design = flow.run(args.config, board=args.board, stop_after="rtl")
        x_int = design.golden.quantize_input(design.data.x_test)
        repeat = max(1, -(-5000 // len(x_int)))
        sim = simulate(design.rtl["early_exit"], x_int, flow._early_exit_choice(design)[1], repeat=repeat)
    ee, base = report, report["baseline"]
    print(f"{args.config} on {args.board}")
    print(f"  make synth cold {cold:7.1f} s   warm {warm:7.1f} s   (warm/cold {warm / cold:.3f})")
    print(
        f"  simulation      {sim.samples / sim.wall_seconds:9.0f} samples/s, "
        f"{sim.cycles / sim.wall_seconds:9.0f} cycles/s ({sim.samples} samples)"
    )
    rows = [
        ("mean latency (cycles)", ee["latency_cycles"]["mean"], base["latency_cycles"]["mean"]),
        ("throughput (samples/cycle)", ee["throughput_samples_per_cycle"], base["throughput_samples_per_cycle"]),
        ("LUT", ee["resources"]["LUT"], base["resources"]["LUT"]),
    ]
    for name, a, b in rows:
        print(f"  {name:28s} early exit {a:10.4g}   baseline {b:10.4g}   ratio {a / b:6.3f}")


if __name__ == "__main__":
    main()
