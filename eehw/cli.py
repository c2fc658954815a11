"""The ``eehw`` command; its verbs mirror the Makefile targets."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from eehw.errors import EehwError


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2, like every other eehw error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _add_config(p: argparse.ArgumentParser) -> None:
    from eehw.config import DEFAULT_CONFIG

    p.add_argument(
        "config",
        nargs="?",
        default=DEFAULT_CONFIG,
        help=f"a config YAML path or a shipped config name (default: {DEFAULT_CONFIG})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eehw", description="Early-exit neural networks to FPGA hardware.")
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

    p = verbs.add_parser("dse", help="co-design loop: exits, thresholds and folding under the board budget")
    _add_config(p)
    p.add_argument("--board", default="pynq-z2", help="board name or board YAML path (default: pynq-z2)")
    p.add_argument(
        "--objective",
        default="latency",
        choices=("latency", "throughput", "resources"),
        help="what the chosen design minimises or maximises (default: latency, i.e. mean cycles)",
    )
    p.add_argument(
        "--min-accuracy",
        type=float,
        metavar="PERCENT",
        help="test accuracy floor in percent (default: the final exit's minus policy.max_drop_pp)",
    )
    p.add_argument("--max-latency", type=float, metavar="CYCLES", help="mean latency ceiling in clock cycles")
    p.add_argument(
        "--max-worst-latency",
        type=float,
        metavar="CYCLES",
        help="ceiling on the worst-case latency (every sample to the final exit) in cycles "
        "(default: --worst-latency-factor times the no-exit baseline's)",
    )
    p.add_argument(
        "--worst-latency-factor",
        type=float,
        metavar="X",
        help="without --max-worst-latency, the final-exit path may take at most X times the no-exit "
        "baseline's latency (default: the config's dse.worst_latency_factor, else 2), so inputs that "
        "never exit cannot slow the device down beyond a stated bound",
    )
    p.add_argument(
        "--min-throughput",
        type=float,
        metavar="SAMPLES_PER_S",
        help="throughput floor in samples per second at the board clock",
    )
    p.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run characterisation and validation jobs on this Dask scheduler (default: the config's "
        "dse.scheduler, else local processes)",
    )
    p.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    p.add_argument(
        "--validate",
        type=int,
        default=3,
        metavar="N",
        help="top designs generated, simulated whole and synthesised (default: 3)",
    )

    p = verbs.add_parser(
        "retune",
        help="new thresholds for the built design (register values only: nothing is regenerated or resynthesised)",
    )
    _add_config(p)
    p.add_argument("--board", default="pynq-z2", help="board name or board YAML path (default: pynq-z2)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--max-drop", type=float, metavar="PP", help="accuracy within PP points of the final exit (on validation)"
    )
    target.add_argument(
        "--budget", type=float, metavar="COST", help="mean cost at most COST x the final-exit network (on validation)"
    )
    target.add_argument("--exit", type=int, metavar="K", help="every sample leaves at exit K of the built design")

    p = verbs.add_parser("compare", help="two designs side by side from their report.json files")
    p.add_argument("report_a", help="a report.json of `eehw synth` or `eehw dse` (or its folder)")
    p.add_argument("report_b", help="the other report.json")

    verbs.add_parser("boards", help="list the known boards")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    except Exception as exc:  # a bug, not bad input: still one line unless asked for the traceback
        if os.environ.get("EEHW_DEBUG"):
            raise
        what = ": ".join(filter(None, (type(exc).__name__, " ".join(str(exc).split()))))
        print(f"eehw: internal error: {what} (set EEHW_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from eehw import flow

    if args.verb == "boards":
        from eehw.board import known_boards, load_board

        for name in known_boards():
            b = load_board(name)
            print(
                f"{b.name:10s} {b.part:22s} {b.clock_mhz:g} MHz  LUT {b.budget.LUT:,}  FF {b.budget.FF:,}  "
                f"BRAM18 {b.budget.BRAM18:,}  DSP {b.budget.DSP:,}"
            )
        return 0
    if args.verb == "sim":
        return _sim(args)
    if args.verb == "train":
        design = flow.run(args.config, stop_after="train", force_train=args.force)
        t = design.trained
        state = "reused cached checkpoint" if t.cached else f"trained in {t.seconds:.1f} s"
        print(f"{design.cfg.name}: {state} -> {t.checkpoint}")
        return 0
    if args.verb == "evaluate":
        design = flow.run(args.config, stop_after="evaluate")
        if args.json:
            print(json.dumps(design.evaluation.to_json(), indent=2))
        else:
            from eehw.policy.evaluate import format_report

            print(format_report(design.evaluation))
        return 0
    if args.verb == "synth":
        from eehw.board import load_board

        load_board(args.board)  # flow.run takes an empty name for "no board" and would skip the hardware
        design = flow.run(args.config, board=args.board)
        from eehw.policy.evaluate import format_report
        from eehw.report.synth import to_markdown

        print(format_report(design.evaluation))
        print()
        print(to_markdown(design.report))
        print("reports: " + ", ".join(str(p) for p in design.report_paths))
        return 0
    if args.verb == "dse":
        return _dse(args)
    if args.verb == "retune":
        from eehw.board import load_board
        from eehw.deploy.retune import format_retune, retune

        load_board(args.board)
        for flag, value in (("--max-drop", args.max_drop), ("--budget", args.budget)):
            if value is not None and not value >= 0:  # also refuses nan
                raise EehwError(f"{flag} must be a non-negative number, got {value}")
        print(
            format_retune(
                retune(args.config, args.board, max_drop_pp=args.max_drop, budget=args.budget, exit=args.exit)
            )
        )
        return 0
    if args.verb == "compare":
        from eehw.report.compare import compare

        compare(args.report_a, args.report_b)
        return 0
    raise AssertionError(args.verb)


def _sim(args: argparse.Namespace) -> int:
    try:
        import pytest
    except ImportError:
        raise EehwError("eehw sim runs the testbenches with pytest: pip install pytest") from None
    from eehw.hw.tools.verilator import verilator_env
    from eehw.paths import shipped

    if args.keyword:
        _check_keyword(args.keyword)
    verilator_env()  # a missing Verilator is one line here, not a skip per test
    extra = ["-k", args.keyword] if args.keyword else []
    code = pytest.main([str(shipped("rtl_sim") / "tests"), "-q", "-p", "no:cacheprovider", *extra])
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        raise EehwError(f"-k {args.keyword!r} matches no testbench; `eehw sim` without -k runs them all")
    return int(code)


def _check_keyword(expr: str) -> None:
    """Parse ``-k`` as pytest will, so a typo is one line before Verilator starts, not pytest's usage error."""
    try:
        from _pytest.mark import expression
    except ImportError:  # pragma: no cover - pytest moved its parser; it checks -k itself then
        return
    # pytest 9 raises SyntaxError (msg, offset); older versions ParseError (message, column).
    errors = (SyntaxError, getattr(expression, "ParseError", SyntaxError))
    try:
        expression.Expression.compile(expr)
    except errors as exc:
        detail = getattr(exc, "msg", None) or getattr(exc, "message", None) or str(exc)
        column = getattr(exc, "offset", None) or getattr(exc, "column", None)
        where = f" at column {column}" if column else ""
        raise EehwError(
            f"-k {expr!r} is not a pytest -k expression ({detail}{where}); e.g. -k 'mvu or requant'"
        ) from None


def _dse(args: argparse.Namespace) -> int:
    from eehw.board import load_board
    from eehw.dse.explore import run as run_dse
    from eehw.dse.search import Constraints

    for flag, value in (
        ("--min-accuracy", args.min_accuracy),
        ("--max-latency", args.max_latency),
        ("--max-worst-latency", args.max_worst_latency),
        ("--min-throughput", args.min_throughput),
    ):
        if value is not None and not value > 0:  # also refuses nan
            raise EehwError(f"{flag} must be a positive number, got {value}")
    if args.worst_latency_factor is not None and not args.worst_latency_factor >= 1:
        raise EehwError(f"--worst-latency-factor must be at least 1, got {args.worst_latency_factor}")
    if args.workers is not None and args.workers < 1:
        raise EehwError(f"--workers must be at least 1 (local worker processes), got {args.workers}")
    if args.scheduler is not None and not args.scheduler.startswith("tcp://"):
        raise EehwError(f"--scheduler must be a Dask scheduler address tcp://HOST:PORT, got {args.scheduler!r}")
    if args.min_accuracy is not None and args.min_accuracy > 100:
        raise EehwError(f"--min-accuracy is a percentage (0-100], got {args.min_accuracy}")
    clock = load_board(args.board).clock_mhz
    constraints = Constraints(
        min_accuracy=None if args.min_accuracy is None else args.min_accuracy / 100,
        max_latency=args.max_latency,
        max_worst_latency=args.max_worst_latency,
        worst_latency_factor=args.worst_latency_factor,
        min_throughput=None if args.min_throughput is None else args.min_throughput / (clock * 1e6),
    )
    report = run_dse(
        args.config,
        args.board,
        constraints=constraints,
        objective=args.objective,
        scheduler=args.scheduler,
        workers=args.workers,
        validate=args.validate,
    )
    from eehw.report.dse import to_markdown

    print(to_markdown(report))
    print("reports: " + ", ".join(report["paths"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
