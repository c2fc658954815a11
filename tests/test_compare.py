"""`eehw compare A B`: a synth report and a DSE report side by side, ratios B / A."""

import json

import pytest

from eehw.cli import main
from eehw.errors import EehwError
from eehw.report.compare import compare, load_summary, rows

SYNTH = {
    "design": "digits_mlp",
    "board": "pynq-z2",
    "part": "xc7z020clg400-1",
    "clock_mhz": 100.0,
    "accuracy": {"early_exit": 0.95, "final_only": 0.955},
    "exits": [{"position": 0, "policy": "margin"}, {"position": 3, "policy": "margin"}],
    "latency_cycles": {"mean": 400.0, "p99": 900.0, "worst_case_measured": 1000},
    "throughput_samples_per_cycle": 0.004,
    "resources": {"LUT": 10000, "FF": 8000, "DSP": 4, "BRAM18": 2},
}

DSE = {
    "kind": "dse",
    "design": "digits_mlp",
    "board": "pynq-z2",
    "clock_mhz": 100.0,
    "chosen": {
        "exits": [1, 3],
        "policy": "max_softmax_pow2",
        "predicted": {"accuracy": 0.96},
        "measured": {
            "latency_cycles": {"mean": 300.0, "p99": 800.0},
            "worst_case_latency_cycles": 1100,
            "throughput_samples_per_cycle": 0.008,
            "resources": {"LUT": 5000, "FF": 6000, "DSP": 0, "BRAM18": 2},
        },
    },
}


@pytest.fixture
def reports(tmp_path):
    a, b = tmp_path / "synth.json", tmp_path / "dse" / "report.json"
    b.parent.mkdir()
    a.write_text(json.dumps(SYNTH))
    b.write_text(json.dumps(DSE))
    return a, b


def test_summaries_read_both_report_kinds(reports):
    a, b = (load_summary(p) for p in reports)
    assert a["exits"] == [0, 3] and a["mean_latency"] == 400.0 and a["worst_case_latency"] == 1000
    assert b["exits"] == [1, 3] and b["policy"] == "max_softmax_pow2" and b["LUT"] == 5000
    assert b["throughput_per_s"] == pytest.approx(0.008 * 100e6)
    assert load_summary(reports[1].parent)["label"] == b["label"]  # a report folder works too


def test_ratios_are_b_over_a(reports):
    table = {r[0]: r for r in rows(*(load_summary(p) for p in reports))}
    assert table["mean latency (cycles)"][3] == "0.750x"
    assert table["throughput (samples/cycle)"][3] == "2.000x"
    assert table["LUT"][3] == "0.500x"
    assert table["DSP"][3] == "0.000x"
    assert table["BRAM18"][3] == "1.000x"
    assert table["accuracy"][1:] == ("95.00%", "96.00%", f"{0.96 / 0.95:.3f}x")


def test_cli_prints_the_table(reports, capsys):
    assert main(["compare", str(reports[0]), str(reports[1])]) == 0
    out = capsys.readouterr().out
    assert "B / A" in out and "0.500x" in out
    assert "0.500x" in compare(*reports)


def test_bad_reports_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(EehwError, match="not valid JSON"):
        load_summary(bad)
    with pytest.raises(EehwError, match="neither"):
        load_summary(other)
    assert main(["compare", str(tmp_path / "missing.json"), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
