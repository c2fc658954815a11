"""The DSE report: markdown and a self-contained HTML page whose plots decode in a real browser
(headless Chromium), written from a search over a hand-made characterisation."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from dse_cases import CONFIGS, board, exit_config, three_block_char

from eehw.dse.explore import pareto_point
from eehw.dse.search import Constraints, baseline_ratios, ceiling_sweep, search, top_designs
from eehw.dse.validate import compare_predicted
from eehw.report.dse import misses, to_markdown, write_reports


def _measured(des, rng, lut_error=0.0):
    """A plausible measurement of a design (this test is about the report, not the model)."""
    p = des["predicted"]
    n = 200
    exit_index = rng.choice(len(des["exits"]), size=n, p=des["exit_fractions"])
    lat = np.array(
        [des["predicted"]["worst_latency"] if e == len(des["exits"]) - 1 else p["mean_latency"] / 2 for e in exit_index]
    )
    return {
        "bit_exact": {
            "samples": n,
            "mismatches": 0,
            "exit_mismatches": 0,
            "class_mismatches": 0,
            "lost": 0,
            "duplicated": 0,
        },
        "latency_cycles": {
            "mean": float(lat.mean()),
            "p50": float(np.median(lat)),
            "p99": float(lat.max()),
            "max": int(lat.max()),
            "min": int(lat.min()),
            "per_exit": [],
        },
        "latency_cycles_raw": lat.tolist(),
        "worst_case_latency_cycles": int(p["worst_latency"]),
        "latency_bound": int(p["worst_latency"]),
        "throughput_samples_per_cycle": p["throughput"] * 0.99,
        "exit_index": exit_index.tolist(),
        "exit_rates": (np.bincount(exit_index, minlength=len(des["exits"])) / n).tolist(),
        "resources": {k: p[k] * (1 + lut_error) for k in ("LUT", "FF", "DSP", "BRAM18")},
    }


@pytest.fixture(scope="module")
def report_and_result():
    rng = np.random.default_rng(0)
    char = three_block_char()
    char.synthesised, char.cached, char.seconds = 3, 40, 1.5
    configs = [exit_config(p, f, a) for p, f, a in CONFIGS]
    result = search(char, configs, board(), Constraints(min_accuracy=0.93), "latency")
    picks = top_designs(result, 3)
    designs = []
    for n, i in enumerate([*picks, result.baseline]):
        des = result.design(i)
        des["id"] = "baseline" if i == result.baseline else f"design{n}"
        des["measured"] = _measured(des, rng, lut_error=0.2 if n == 1 else 0.0)
        des["errors"] = compare_predicted(des, des["measured"])
        designs.append(des)
    ratios = baseline_ratios(result)
    for r in ratios.values():
        if isinstance(r, dict):
            r["design"], r["measured_ratio"] = "design0", None
    report = {
        "kind": "dse",
        "design": "synthetic",
        "board": "test",
        "part": "xc7z020clg400-1",
        "clock_mhz": 100.0,
        "objective": "latency",
        "constraints": {"min_accuracy": 0.93, "max_latency": None, "min_throughput": None},
        "budget": {"LUT": 53200, "FF": 106400, "BRAM18": 280, "DSP": 220},
        "characterisation": {"lane_levels": [1, 2, 4], "synthesised": 3, "cached": 40, "seconds": 1.5},
        "search": {
            "exit_configurations": len(configs),
            "candidates": result.evaluated,
            "within_budget": int(result.fits.sum()),
            "feasible": int(result.feasible.sum()),
            "pareto": len(result.pareto),
            "methods": {"exhaustive": 4},
            "exhaustive_limit": 4096,
            "seconds": result.seconds,
        },
        "chosen": designs[0],
        "baseline": designs[-1],
        "validated": designs,
        "ratios": ratios,
        "ceiling_sweep": ceiling_sweep(result),
        "pareto": [pareto_point(result, i) for i in result.pareto],
        "seconds": {"search": result.seconds},
    }
    return report, result


def test_markdown_states_search_size_chosen_design_ratios_and_misses(report_and_result):
    report, _ = report_and_result
    md = to_markdown(report)
    assert f"{report['search']['candidates']:,} candidates" in md
    assert "## Predicted vs measured" in md and "## Ratios against the baseline" in md
    # design1 was measured 20 % above its predicted LUTs: the report says the model missed there.
    assert any(m.startswith("design1: LUT off by -16.7 %") for m in misses(report))
    assert "design1: LUT off by -16.7 %" in md
    assert not any(m.startswith("design0: LUT") for m in misses(report))
    # The ceiling's price: one row per swept factor, the applied ceiling's row equal to the ratio table.
    assert "## The worst-case ceiling's price (predicted)" in md
    section = md.split("## The worst-case ceiling's price (predicted)")[1].split("\n## ")[0]
    rows = {r.split(" | ")[0].strip("| "): r for r in section.splitlines() if r.startswith("| ") and " | " in r}
    assert {"1.5", "2", "3", "4", "6", "8", "10", "none"} <= set(rows)
    at_default = report["ratios"]["luts_at_equal_throughput"]["ratio"]
    assert f"{at_default:.3f}x" in rows["2"]
    # A ratio whose design overran the board once synthesised says so instead of a measured figure.
    over = {**report, "ratios": {**report["ratios"]}}
    over["ratios"]["throughput_at_equal_luts"] = {
        **report["ratios"]["throughput_at_equal_luts"],
        "misses": ["design0: over the budget once synthesised, LUT over by 527 (53,727 / 53,200)"],
    }
    assert "not measured: design0: over the budget once synthesised, LUT over by 527" in to_markdown(over)
    # ... and a ratio picked again after its first design overran names the one passed over.
    over["ratios"]["throughput_at_equal_luts"] = {
        **report["ratios"]["throughput_at_equal_luts"],
        "passed_over": ["design9: over the budget once synthesised, LUT over by 527 (53,727 / 53,200)"],
    }
    md = to_markdown(over)
    assert "next best, passed over: design9: over the budget once synthesised, LUT over by 527" in md
    assert "not measured" not in md


def test_json_is_plain_and_without_per_sample_arrays(report_and_result, tmp_path):
    report, result = report_and_result
    paths = write_reports(report, tmp_path, result)
    data = json.loads(paths[0].read_text())
    assert "latency_cycles_raw" not in data["chosen"]["measured"]
    assert data["chosen"]["exits"] == report["chosen"]["exits"]
    html = paths[2].read_text()
    assert html.count('src="data:image/png;base64,') == 5
    assert "http" not in re.sub(r"<!DOCTYPE[^>]*>", "", html)  # self-contained: nothing fetched


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_html_renders_in_headless_chromium_with_every_plot_decoded(report_and_result, tmp_path):
    report, result = report_and_result
    html_path = write_reports(report, tmp_path, result)[2]
    probe = tmp_path / "probe.html"
    script = (
        "<script>window.addEventListener('load', () => { const imgs = [...document.images];"
        " document.body.setAttribute('data-probe', imgs.filter(i => i.complete && i.naturalWidth > 100).length"
        " + '/' + imgs.length + '/' + document.querySelectorAll('table').length"
        " + '/' + document.querySelectorAll('#validation tbody tr').length); });</script>"
    )
    probe.write_text(html_path.read_text().replace("</body>", script + "</body>"))
    proc = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'data-probe="(\d+)/(\d+)/(\d+)/(\d+)"', proc.stdout)
    assert found, f"chromium rendered nothing: {proc.stderr[-500:]}"
    decoded, images, tables, rows = map(int, found.groups())
    assert images == 5 and decoded == 5
    assert tables >= 4
    assert rows == len(report["validated"])
