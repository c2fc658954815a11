"""The ``eehw`` command; its verbs mirror the Makefile targets."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from eehw.errors import EehwError


def _add_config(p: argparse.ArgumentParser) -> None:
    from eehw.config import DEFAULT_CONFIG

    p.add_argument("config", nargs="?", default=DEFAULT_CONFIG,
                   help=f"a config YAML path or a shipped config name (default: {DEFAULT_CONFIG})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eehw", description="Early-exit neural networks to FPGA hardware.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("train", help="train the multi-exit model (reuses the cached checkpoint)")
    _add_config(p)
    p.add_argument("--force", action="store_true", help="retrain even when a cached checkpoint exists")

    p = verbs.add_parser("evaluate", help="golden integer model, exit policy, thresholds and test-set report")
    _add_config(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")

    p = verbs.add_parser("synth", help="the whole flow for a board: train, evaluate, hardware, report")
    _add_config(p)
    p.add_argument("--board", default="pynq-z2", help="board name or board YAML path (default: pynq-z2)")

    p = verbs.add_parser("sim", help="run the cocotb/Verilator testbenches of the RTL library")
    p.add_argument("-k", dest="keyword", help="only the tests matching this pytest -k expression")

    verbs.add_parser("boards", help="list the known boards")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Brevitas and torch warn about internals a user cannot act on.
    warnings.filterwarnings("ignore")
    try:
        return _run(args)
    except EehwError as exc:
        print(f"eehw: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eehw: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from eehw import flow

    if args.verb == "boards":
        from eehw.board import known_boards, load_board

        for name in known_boards():
            b = load_board(name)
            print(f"{b.name:10s} {b.part:22s} {b.clock_mhz:g} MHz  LUT {b.budget.LUT:,}  FF {b.budget.FF:,}  "
                  f"BRAM18 {b.budget.BRAM18:,}  DSP {b.budget.DSP:,}")
        return 0
    if args.verb == "sim":
        try:
            import pytest
        except ImportError:
            raise EehwError("eehw sim runs the testbenches with pytest: pip install pytest") from None
        from eehw.paths import shipped
        from eehw.verilator import verilator_env

        verilator_env()  # a missing Verilator is one line here, not a skip per test
        extra = ["-k", args.keyword] if args.keyword else []
        return pytest.main([str(shipped("rtl_sim") / "tests"), "-q", "-p", "no:cacheprovider", *extra])
    if args.verb == "train":
        design = flow.run(args.config, stop_after="train", force_train=args.force)
        t = design.trained
        state = "reused cached checkpoint" if t.cached else f"trained in {t.seconds:.1f} s"
        print(f"{design.cfg.name}: {state} -> {t.checkpoint}")
        return 0
    if args.verb == "evaluate":
        design = flow.run(args.config, stop_after="evaluate")
        if args.json:
            print(json.dumps(design.evaluation, indent=2))
        else:
            from eehw.evaluate import format_report

            print(format_report(design.evaluation))
        return 0
    if args.verb == "synth":
        design = flow.run(args.config, board=args.board)
        from eehw.evaluate import format_report
        from eehw.report import to_markdown

        print(format_report(design.evaluation))
        print()
        print(to_markdown(design.report))
        print("reports: " + ", ".join(str(p) for p in design.report_paths))
        return 0
    raise AssertionError(args.verb)


if __name__ == "__main__":
    sys.exit(main())
