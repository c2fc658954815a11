"""What early exit buys in hardware, per config: `eehw dse` ratios against the no-exit baseline
built from the same streaming library at its best folding, and the cold/warm flow times.

    .venv/bin/python benchmarks/early_exit_ratios.py [CONFIG ...] [--board pynq-z2] [--keep DIR]
        [--worst-latency-factor X]

For each config, in fresh cache and build folders (or under ``--keep DIR``, reused when they exist):
1. `eehw synth CONFIG` cold (training, C-sim, RTL simulation of the test set, Yosys: nothing cached),
2. the same again warm (everything cached),
3. `eehw dse CONFIG` cold in a folder of its own (training, alternative heads, characterisation,
   search, validation of the designs behind each ratio), at the config's worst-case ceiling or at
   ``--worst-latency-factor X`` times the baseline's worst case.
It prints, per config, the three ratios (measured on the validated designs: simulated whole and
synthesised; the DSE's predictions next to them), LUT/FF/BRAM18/DSP of the chosen design and
of the baseline, per-exit test accuracy, and the three wall times. Not a test: it measures and
prints, it asserts nothing. Defaults: digits_cnn, mnist1d_cnn, fmnist_cnn.
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
CONFIGS = ("digits_cnn", "mnist1d_cnn", "fmnist_cnn")
RATIOS = (
    ("luts_at_equal_throughput", "LUTs at equal throughput"),
    ("throughput_at_equal_luts", "throughput at equal LUTs"),
    ("mean_latency_at_equal_accuracy", "mean latency at equal accuracy"),
)


def _eehw(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "eehw.cli", *args], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def _resources(design: dict) -> str:
    r = design["measured"]["resources"] if "measured" in design else design["resources"]
    return f"LUT {r['LUT']:>6}  FF {r['FF']:>6}  BRAM18 {r['BRAM18']:>3}  DSP {r['DSP']:>3}"


def _env(root: Path) -> dict:
    return {**os.environ, "EEHW_CACHE_DIR": str(root / "cache"), "EEHW_BUILD_DIR": str(root / "build")}


def bench(config: str, board: str, root: Path, dse_options: list[str]) -> None:
    cold = _eehw(["synth", config, "--board", board], _env(root / "synth"))
    warm = _eehw(["synth", config, "--board", board], _env(root / "synth"))
    dse_s = _eehw(["dse", config, "--board", board, *dse_options], _env(root / "dse"))
    report_dir = root / "synth" / "build" / board / config
    report = json.loads((report_dir / "report.json").read_text())
    dse = json.loads((root / "dse" / "build" / board / config / "dse" / "report.json").read_text())
    print(f"\n== {config} on {board}")
    print(f"  eehw synth cold {cold:7.1f} s   warm {warm:6.1f} s   eehw dse cold {dse_s:7.1f} s")
    evaluation = json.loads((report_dir / "evaluation.json").read_text())
    heads = "  ".join(f"{e['head']} {e['accuracy']:.2%} (exit rate {e['exit_rate']:.1%})" for e in evaluation["exits"])
    print(f"  test accuracy per exit head (exit rate under the config's policy): {heads}")
    acc = report["accuracy"]
    print(
        f"  test accuracy of the built design: early exit {acc['early_exit']:.2%}, final exit only {acc['final_only']:.2%}"
    )
    validated = {d["id"]: d for d in dse["validated"]}
    for key, name in RATIOS:
        r = dse["ratios"].get(key)
        if not r:
            print(f"  {name:32s} none (no early-exit design qualifies)")
            continue
        measured = r.get("measured_ratio")
        note = " (beyond the worst-case ceiling)" if r.get("ignores_worst_case_ceiling") else ""
        if r.get("misses"):
            note += f" (not measured: {'; '.join(r['misses'])})"
        if r.get("passed_over"):
            note += f" (next best, passed over: {'; '.join(r['passed_over'])})"
        print(
            f"  {name:32s} measured {measured if measured is None else f'{measured:.3f}x'}   "
            f"predicted {r['ratio']:.3f}x{note}"
        )
        for role, ident in (("early exit", r.get("design")), ("baseline", r.get("baseline_design"))):
            if ident in validated:
                print(
                    f"    {role:10s} {ident:24s} {_resources(validated[ident])}   "
                    f"{validated[ident]['measured']['throughput_samples_per_cycle']:.6f} samples/cycle"
                )
    print(f"  chosen   {_resources(dse['chosen'])}   exits {dse['chosen']['exits']}")
    print(f"  baseline {_resources(dse['baseline'])}")
    sweep = "  ".join(
        f"{'%gx' % row['factor'] if row['factor'] else 'none'}: "
        f"{row['luts_at_equal_throughput'] or float('nan'):.3f}/{row['throughput_at_equal_luts'] or float('nan'):.2f}"
        for row in dse.get("ceiling_sweep", [])
    )
    print(f"  predicted LUT/throughput ratios per worst-case ceiling: {sweep}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=list(CONFIGS))
    parser.add_argument("--board", default="pynq-z2")
    parser.add_argument("--keep", type=Path, help="cache and build folder to use (and keep) instead of a temporary one")
    parser.add_argument("--worst-latency-factor", help="passed to eehw dse (default: the config's ceiling)")
    args = parser.parse_args()
    dse_options = ["--worst-latency-factor", args.worst_latency_factor] if args.worst_latency_factor else []
    for config in args.configs:
        if args.keep:
            bench(config, args.board, args.keep / config, dse_options)
        else:
            with tempfile.TemporaryDirectory(prefix="eehw-bench-") as tmp:
                bench(config, args.board, Path(tmp), dse_options)


if __name__ == "__main__":
    main()
