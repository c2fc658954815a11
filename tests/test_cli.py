"""The command line: the main job runs through, and bad input gives one line, no traceback."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from eehw import flow


def _eehw(*args, cwd=None):
    # The whole cold flow takes about 4 minutes on an idle 2-core machine; the timeout only
    # catches a hang, with room for a loaded one.
    return subprocess.run(
        [sys.executable, "-m", "eehw.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),
        timeout=1800,
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["evaluate", "missing.yaml"], "config file missing.yaml does not exist"),
        (["evaluate", "no_such_config"], "unknown config 'no_such_config'"),
        (["synth", "--board", "pynq-z9"], "unknown board 'pynq-z9'"),
    ],
)
def test_bad_input_is_one_line(args, message):
    result = _eehw(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_bad_yaml_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {name: digits\nmodel: [\n")
    result = _eehw("train", str(bad))
    assert result.returncode == 2 and "invalid YAML" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_synth_runs_the_whole_flow_and_writes_the_reports():
    result = _eehw("synth", "--board", "pynq-z2")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out_dir = os.path.join(os.environ["EEHW_BUILD_DIR"], "pynq-z2", "digits_mlp")
    with open(os.path.join(out_dir, "report.json")) as f:
        report = json.load(f)
    for key in (
        "board",
        "part",
        "clock_mhz",
        "dataset",
        "accuracy",
        "exits",
        "latency_cycles",
        "throughput_samples_per_cycle",
        "baseline",
        "resources",
        "fits",
        "bit_exact",
    ):
        assert key in report
    assert report["part"] == "xc7z020clg400-1" and report["clock_mhz"] == 100
    assert report["bit_exact"]["mismatches"] == 0 and report["bit_exact"]["samples"] == 359
    assert report["baseline"]["bit_exact"]["mismatches"] == 0
    for key in ("mean", "p50", "p99", "max", "bound"):
        assert key in report["latency_cycles"]
    for key in ("LUT", "FF", "DSP", "BRAM18", "per_block", "tool"):
        assert key in report["resources"]
    assert report["resources"]["LUT"] > 0 and report["fits"] is True
    assert {"position", "policy", "threshold", "exit_rate", "accuracy"} <= set(report["exits"][0])
    # Exits no validation sample uses are not built, and the report says so.
    with open(os.path.join(out_dir, "evaluation.json")) as f:
        unused = {
            e["position"]
            for e in json.load(f)["exits"][:-1]
            if e["threshold"] is None or e["val_exit_rate"] < flow.MIN_EXIT_RATE
        }
    assert unused and {e["position"] for e in report["dropped_exits"]} == unused
    assert not unused & {e["position"] for e in report["exits"]}
    assert all(
        "validation samples" in line or "disabled" in line
        for line in open(os.path.join(out_dir, "report.md")).read().splitlines()
        if "not built" in line
    )
    html = open(os.path.join(out_dir, "report.html")).read()
    assert "data:image/png;base64," in html and "<table>" in html
    # The HLS path ran too: every block and head an hls4ml project, the chained C-sim bit-exact on
    # the whole test set, the multi-exit top written, and the missing vendor tools said in one line.
    hls = report["hls"]
    golden_parts = {f"blocks.{k}" for k in range(4)} | {f"heads.{k}" for k in range(4)}
    assert set(hls["mismatches"]) == golden_parts and not any(hls["mismatches"].values())
    assert hls["samples"] == 359
    assert all(p["part"] == "xc7z020clg400-1" for p in hls["projects"])
    assert os.path.isfile(hls["top"]["tcl"]) and os.path.isfile(hls["top"]["register_map"])
    if shutil.which("vivado") is None:
        assert "not on PATH" in hls["vendor"]["skipped"]
        assert hls["vendor"]["skipped"] in result.stdout.splitlines()  # said as one line of its own
    # The hardware agrees with the software evaluation of the same thresholds.
    with open(os.path.join(out_dir, "evaluation.json")) as f:
        evaluation = json.load(f)
    assert abs(report["accuracy"]["early_exit"] - evaluation["accuracy"]) < 1e-12
    json_run = _eehw("evaluate", "--json")
    assert json.loads(json_run.stdout)["accuracy"] == evaluation["accuracy"]  # cached checkpoint, same result
