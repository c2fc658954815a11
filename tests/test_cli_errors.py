"""Every verb answers bad input (files, keys, types, options) with one line and exit 2, no traceback.

The inputs fail before any training: option tests pass a config that fails to load, so a check
that went missing shows up as the wrong message at once instead of a training run.
"""

import argparse
import json
import subprocess
import sys

import pytest

from eehw.cli import main

GOOD_REPORT = {
    "design": "d",
    "board": "pynq-z2",
    "clock_mhz": 100.0,
    "accuracy": {"early_exit": 0.9},
    "exits": [{"position": 0, "policy": "margin"}],
    "latency_cycles": {"mean": 10.0, "p99": 20.0},
    "throughput_samples_per_cycle": 0.1,
    "resources": {"LUT": 1, "FF": 1, "DSP": 0, "BRAM18": 0},
}
DSE_REPORT = {
    "kind": "dse",
    "design": "d",
    "board": "pynq-z2",
    "clock_mhz": 100.0,
    "chosen": {
        "exits": [1, 3],
        "policy": "margin",
        "predicted": {"accuracy": 0.9},
        "measured": {
            "latency_cycles": {"mean": 1.0, "p99": 2.0},
            "worst_case_latency_cycles": 3,
            "throughput_samples_per_cycle": 0.1,
            "resources": {"LUT": 1, "FF": 1, "DSP": 0, "BRAM18": 0},
        },
    },
}


def _with(report: dict, dotted: str, value=None, delete=False) -> dict:
    """A deep copy of ``report`` with one dotted key replaced or deleted."""
    out = json.loads(json.dumps(report))
    *parents, last = dotted.split(".")
    node = out
    for p in parents:
        node = node[p]
    if delete:
        del node[last]
    else:
        node[last] = value
    return out


FILES = {
    "list.yaml": "- a\n- b\n",
    "epochs.yaml": "data: {name: digits}\nmodel: {backbone: mlp, widths: [8]}\ntraining: {epochs: ten}\n",
    "widths.yaml": "data: {name: digits}\nmodel: {backbone: mlp, widths: 8}\n",
    "broken.yaml": "data: {name: digits\nmodel: [\n",
    "board_clock.yaml": "name: b\npart: p\nfamily: xc7\nclock_mhz: fast\n"
    "budget: {LUT: 1, FF: 1, BRAM18: 1, DSP: 1}\nshell: {type: none}\ndescription: ''\n",
    "not_json.json": "{nope",
    "list.json": "[1, 2]",
    "binary.json": b"\xff\xfe\x00\x01",
    "good.json": json.dumps(GOOD_REPORT),
    "no_design.json": json.dumps(_with(GOOD_REPORT, "design", delete=True)),
    "no_chosen.json": json.dumps(_with(DSE_REPORT, "chosen", delete=True)),
    "chosen_list.json": json.dumps(_with(DSE_REPORT, "chosen", [1])),
    "lut_text.json": json.dumps(_with(DSE_REPORT, "chosen.measured.resources.LUT", "many")),
    "latency_text.json": json.dumps(_with(GOOD_REPORT, "latency_cycles", "fast")),
    "exits_numbers.json": json.dumps(_with(GOOD_REPORT, "exits", [3])),
    "clock_text.json": json.dumps(_with(GOOD_REPORT, "clock_mhz", "fast")),
    "neither.json": json.dumps({"hello": 1}),
    "failed.json": json.dumps(
        {
            "design": "d",
            "board": "pynq-z2",
            "status": "failed",
            "fits": False,
            "failed": {
                "step": "simulate",
                "level": "rtl early-exit",
                "reason": "rtl early-exit: 3 results differ from the golden model",
            },
        }
    ),
}

CASES = [
    # verb, argv ({f} is the tmp folder), phrase of the one line
    ("train", ["train", "{f}/missing.yaml"], "config file {f}/missing.yaml does not exist"),
    ("train", ["train", "--force", "{f}/list.yaml"], "the file must hold a mapping"),
    ("train", ["train", "{f}/epochs.yaml"], "key 'training.epochs' must be an integer, got 'ten'"),
    ("train", ["train", "{f}"], "unknown config"),
    ("evaluate", ["evaluate", "{f}/widths.yaml"], "key 'model.widths' must be a list of integers, got 8"),
    ("evaluate", ["evaluate", "--json", "{f}/broken.yaml"], "invalid YAML at line"),
    ("synth", ["synth", "{f}/epochs.yaml", "--board", "pynq-z9"], "unknown board 'pynq-z9'"),
    ("synth", ["synth", "{f}/epochs.yaml", "--board", ""], "unknown board ''"),
    (
        "synth",
        ["synth", "{f}/epochs.yaml", "--board", "{f}/board_clock.yaml"],
        "key 'clock_mhz' must be a positive number, got 'fast'",
    ),
    (
        "synth",
        ["synth", "{f}/epochs.yaml", "--board", "{f}/missing.yaml"],
        "board file {f}/missing.yaml does not exist",
    ),
    ("synth", ["synth", "{f}/epochs.yaml"], "key 'training.epochs' must be an integer"),
    ("dse", ["dse", "{f}/epochs.yaml", "--min-accuracy", "abc"], "argument --min-accuracy: invalid float value: 'abc'"),
    ("dse", ["dse", "{f}/epochs.yaml", "--min-accuracy", "-5"], "--min-accuracy must be a positive number, got -5.0"),
    ("dse", ["dse", "{f}/epochs.yaml", "--min-accuracy", "500"], "--min-accuracy is a percentage (0-100], got 500.0"),
    ("dse", ["dse", "{f}/epochs.yaml", "--max-latency", "nan"], "--max-latency must be a positive number, got nan"),
    ("dse", ["dse", "{f}/epochs.yaml", "--max-worst-latency", "0"], "--max-worst-latency must be a positive number"),
    ("dse", ["dse", "{f}/epochs.yaml", "--worst-latency-factor", "0.9"], "--worst-latency-factor must be at least 1"),
    ("dse", ["dse", "{f}/epochs.yaml", "--min-throughput", "-1"], "--min-throughput must be a positive number"),
    ("dse", ["dse", "{f}/epochs.yaml", "--workers", "0"], "--workers must be at least 1"),
    ("dse", ["dse", "{f}/epochs.yaml", "--workers", "two"], "argument --workers: invalid int value: 'two'"),
    ("dse", ["dse", "{f}/epochs.yaml", "--validate", "0"], "--validate must be at least 1"),
    (
        "dse",
        ["dse", "{f}/epochs.yaml", "--scheduler", "localhost:8786"],
        "--scheduler must be a Dask scheduler address tcp://HOST:PORT, got 'localhost:8786'",
    ),
    ("dse", ["dse", "{f}/epochs.yaml", "--objective", "speed"], "argument --objective: invalid choice: 'speed'"),
    ("dse", ["dse", "{f}/epochs.yaml", "--board", "nope"], "unknown board 'nope'"),
    ("dse", ["dse", "{f}/epochs.yaml"], "key 'training.epochs' must be an integer"),
    ("retune", ["retune", "{f}/epochs.yaml"], "one of the arguments --max-drop --budget --exit is required"),
    (
        "retune",
        ["retune", "{f}/epochs.yaml", "--budget", "0.5", "--exit", "1"],
        "argument --exit: not allowed with argument --budget",
    ),
    ("retune", ["retune", "{f}/epochs.yaml", "--budget", "-1"], "--budget must be a non-negative number, got -1.0"),
    ("retune", ["retune", "{f}/epochs.yaml", "--max-drop", "nan"], "--max-drop must be a non-negative number"),
    ("retune", ["retune", "{f}/epochs.yaml", "--exit", "1", "--board", "nope"], "unknown board 'nope'"),
    ("retune", ["retune", "{f}/epochs.yaml", "--exit", "1"], "key 'training.epochs' must be an integer"),
    ("compare", ["compare", "{f}/missing.json", "{f}/good.json"], "report {f}/missing.json does not exist"),
    ("compare", ["compare", "{f}", "{f}/good.json"], "report {f}/report.json does not exist"),
    ("compare", ["compare", "{f}/not_json.json", "{f}/good.json"], "is not valid JSON"),
    ("compare", ["compare", "{f}/binary.json", "{f}/good.json"], "cannot be read (UnicodeDecodeError)"),
    ("compare", ["compare", "{f}/good.json", "{f}/list.json"], "a JSON object expected, got a list"),
    ("compare", ["compare", "{f}/neither.json", "{f}/good.json"], "is neither an `eehw synth` nor an `eehw dse`"),
    (
        "compare",
        ["compare", "{f}/failed.json", "{f}/good.json"],
        "failed.json is of a design the flow refused (rtl early-exit: 3 results differ from the golden model)",
    ),
    ("compare", ["compare", "{f}/no_design.json", "{f}/good.json"], "no_design.json: key 'design' missing; give a"),
    ("compare", ["compare", "{f}/good.json", "{f}/no_chosen.json"], "no_chosen.json: key 'chosen' missing"),
    ("compare", ["compare", "{f}/chosen_list.json", "{f}/good.json"], "key 'chosen' must be an object, got a list"),
    (
        "compare",
        ["compare", "{f}/lut_text.json", "{f}/good.json"],
        "key 'chosen.measured.resources.LUT' must be a number, got 'many'",
    ),
    ("compare", ["compare", "{f}/latency_text.json", "{f}/good.json"], "key 'latency_cycles' must be an object"),
    ("compare", ["compare", "{f}/exits_numbers.json", "{f}/good.json"], "key 'exits[0]' must be an object"),
    ("compare", ["compare", "{f}/clock_text.json", "{f}/good.json"], "key 'clock_mhz' must be a number, got 'fast'"),
    ("compare", ["compare", "{f}/good.json"], "the following arguments are required: report_b"),
    ("sim", ["sim", "-k", "and ("], "-k 'and (' is not a pytest -k expression"),
    ("sim", ["sim", "--verbose"], "unrecognized arguments: --verbose"),
    ("boards", ["boards", "extra"], "unrecognized arguments: extra"),
    ("(none)", [], "the following arguments are required: verb"),
    ("(none)", ["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.fixture
def folder(tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return tmp_path


def _one_line(capsys, argv: list[str]) -> str:
    """Run the CLI in-process; it must exit 2 with exactly one non-empty line and no traceback."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert code == 2, out + err
    assert "Traceback" not in out + err
    assert len(lines) == 1, out + err
    return lines[0]


@pytest.mark.parametrize("verb,argv,phrase", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line(folder, capsys, verb, argv, phrase):
    line = _one_line(capsys, [a.format(f=folder) for a in argv])
    assert phrase.format(f=folder) in line
    assert "internal error" not in line  # a specific message, not the safety net


def test_every_verb_is_covered():
    from eehw.cli import build_parser

    verbs = next(a.choices for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(verbs) <= {c[0] for c in CASES}


def test_a_broken_board_file_stops_boards_with_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "bad.yaml").write_text("name: bad\n")
    monkeypatch.setattr("eehw.board.boards_dir", lambda: tmp_path)
    line = _one_line(capsys, ["boards"])
    assert "board file" in line and "bad.yaml" in line and "missing key" in line


def test_an_unexpected_exception_is_one_line_unless_debugging(capsys, monkeypatch):
    def boom():
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("eehw.board.known_boards", boom)
    monkeypatch.delenv("EEHW_DEBUG", raising=False)
    line = _one_line(capsys, ["boards"])
    assert line == "eehw: internal error: RuntimeError: boom second line (set EEHW_DEBUG=1 for the traceback)"
    monkeypatch.setenv("EEHW_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["boards"])


def test_compare_of_a_report_without_keys_exits_2_as_a_process(folder):
    """The reported failure (a KeyError traceback), checked as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "eehw.cli", "compare", str(folder / "no_chosen.json"), str(folder / "good.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "key 'chosen' missing" in lines[0], result.stderr
