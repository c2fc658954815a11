"""The command line: the main job runs through, and bad input gives one line, no traceback."""

import json
import os
import subprocess
import sys

import pytest


def _eehw(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "eehw.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=os.environ.copy(), timeout=600)


@pytest.mark.parametrize("args,message", [
    (["evaluate", "missing.yaml"], "config file missing.yaml does not exist"),
    (["evaluate", "no_such_config"], "unknown config 'no_such_config'"),
    (["synth", "--board", "pynq-z9"], "unknown board 'pynq-z9'"),
])
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
def test_synth_runs_training_and_evaluation_then_says_what_is_next():
    result = _eehw("synth", "--board", "pynq-z2")
    assert result.returncode == 0, result.stderr
    assert "not built yet" in result.stdout and "Traceback" not in result.stderr
    report = os.path.join(os.environ["EEHW_BUILD_DIR"], "pynq-z2", "digits_mlp", "evaluation.json")
    with open(report) as f:
        ev = json.load(f)
    assert ev["golden_mismatches"] == 0 and ev["golden_checked"]["samples"] > 300
    json_run = _eehw("evaluate", "--json")
    assert json.loads(json_run.stdout)["accuracy"] == ev["accuracy"]  # cached checkpoint, same result
