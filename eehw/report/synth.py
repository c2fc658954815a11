"""The design report: report.json (machine-readable), report.md and a self-contained
report.html (plots embedded as PNG data URIs) under build/<board>/<design>/."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from eehw.cache import atomic_write_text


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def write_reports(report: dict, out_dir: Path, latencies: dict[str, np.ndarray]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "report.json", out_dir / "report.md", out_dir / "report.html"]
    atomic_write_text(paths[0], json.dumps(report, indent=2))
    atomic_write_text(paths[1], to_markdown(report))
    atomic_write_text(paths[2], to_html(report, latencies))
    return paths


def write_failed_report(out_dir: Path, design: str, board: str, step: str, error: Exception) -> list[Path]:
    """The report of a design the flow refused: what failed and where, no figures (so nothing
    from this or an earlier run can be read as a design that works or fits)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    level = getattr(error, "level", step)
    report = {
        "design": design,
        "board": board,
        "status": "failed",
        "fits": False,
        "failed": {"step": step, "level": level, "reason": str(error)},
    }
    text = f"# {design} on {board}: FAILED\n\nThe flow stopped at step `{step}` ({level}):\n\n    {error}\n"
    paths = [out_dir / "report.json", out_dir / "report.md", out_dir / "report.html"]
    atomic_write_text(paths[0], json.dumps(report, indent=2))
    atomic_write_text(paths[1], text)
    atomic_write_text(
        paths[2],
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(design)}: FAILED</title>"
        f"</head><body><h1>{html.escape(design)} on {html.escape(board)}: FAILED</h1>"
        f"<p>The flow stopped at step <code>{html.escape(step)}</code> ({html.escape(level)}):</p>"
        f"<pre>{html.escape(str(error))}</pre></body></html>\n",
    )
    return paths


def _rows(report: dict) -> list[tuple[str, str, str, str]]:
    ee, base = report, report["baseline"]
    lat, blat = ee["latency_cycles"], base["latency_cycles"]
    res, bres = ee["resources"], base["resources"]

    def fmt(v, spec="{:,.0f}"):
        return "-" if v is None else spec.format(v)

    def ratio(a, b):
        r = _ratio(a, b)
        return "-" if r is None else f"{r:.2f}x"

    rows = [
        (
            "accuracy",
            fmt(ee["accuracy"]["early_exit"] * 100, "{:.2f} %"),
            fmt(ee["accuracy"]["final_only"] * 100, "{:.2f} %"),
            "",
        ),
        (
            "mean latency (cycles)",
            fmt(lat["mean"], "{:,.1f}"),
            fmt(blat["mean"], "{:,.1f}"),
            ratio(lat["mean"], blat["mean"]),
        ),
        (
            "p99 latency (cycles)",
            fmt(lat["p99"], "{:,.1f}"),
            fmt(blat["p99"], "{:,.1f}"),
            ratio(lat["p99"], blat["p99"]),
        ),
        ("max latency (cycles)", fmt(lat["max"]), fmt(blat["max"]), ratio(lat["max"], blat["max"])),
        ("worst-case bound (cycles)", fmt(lat["bound"]), fmt(blat["bound"]), ""),
        ("worst case measured (cycles)", fmt(lat["worst_case_measured"]), fmt(blat["worst_case_measured"]), ""),
        (
            "throughput (samples/cycle)",
            fmt(ee["throughput_samples_per_cycle"], "{:.4f}"),
            fmt(base["throughput_samples_per_cycle"], "{:.4f}"),
            ratio(ee["throughput_samples_per_cycle"], base["throughput_samples_per_cycle"]),
        ),
    ]
    for key in ("LUT", "FF", "DSP", "BRAM18"):
        rows.append((key, fmt(res[key]), fmt(bres[key]), ratio(res[key], bres[key])))
    t, bt = res.get("timing"), bres.get("timing")
    if t and bt and not t.get("unavailable") and not bt.get("unavailable"):
        rows.append(
            (
                "logic-only critical path (ns, estimated)",
                fmt(t["critical_path_ns"], "{:.2f}"),
                fmt(bt["critical_path_ns"], "{:.2f}"),
                ratio(t["critical_path_ns"], bt["critical_path_ns"]),
            )
        )
        rows.append(
            (
                f"estimated Fmax, logic only (MHz; board {t['clock_mhz']:g})",
                fmt(t["fmax_mhz_logic_only"], "{:.0f}"),
                fmt(bt["fmax_mhz_logic_only"], "{:.0f}"),
                "",
            )
        )
    return rows


def to_markdown(report: dict) -> str:
    lines = [
        f"# {report['design']} on {report['board']} ({report['part']}, {report['clock_mhz']:g} MHz)"
        + ("" if report["fits"] else ": OVER BUDGET, not a design to deploy"),
        "",
        f"Dataset {report['dataset']}, {report['bit_exact']['samples']} test samples simulated; "
        f"{report['bit_exact']['mismatches']} mismatches against the golden model "
        f"(baseline: {report['baseline']['bit_exact']['mismatches']}). "
        f"Fits the board: {'yes' if report['fits'] else 'no: ' + '; '.join(report['resources']['overruns'])}.",
        "",
        "| | early exit | no-exit baseline | ratio |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in _rows(report)]
    lines += [
        "",
        "## Exits",
        "",
        "| exit | block | head | policy | threshold | exit rate | accuracy of exited | head accuracy |",
        "|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for k, e in enumerate(report["exits"]):
        thr = "final" if e["threshold"] is None else e["threshold"]
        exited = "-" if e["exited_accuracy"] is None else f"{e['exited_accuracy'] * 100:.2f} %"
        lines.append(
            f"| {k} | {e['position']} | {e.get('head') or '-'} | {e['policy']} | {thr} | {e['exit_rate'] * 100:.2f} % | {exited} | "
            f"{e['accuracy'] * 100:.2f} % |"
        )
    for kind, r in (("Early-exit design", report["resources"]), ("Baseline", report["baseline"]["resources"])):
        if r.get("timing", {}).get("unavailable"):
            lines.append(f"\n**Timing:** {kind}: no estimate ({r['timing']['unavailable']}).")
        elif r.get("timing", {}).get("warning"):
            lines.append(
                f"\n**Timing:** {kind}: {r['timing']['warning']} (critical path from {r['timing']['from']} "
                f"to {r['timing']['to']}; {r['timing']['method']})."
            )
    for e in report.get("dropped_exits", []):
        lines.append(
            f"\nExit after block {e['position']} ({e['head']}) not built: {e['reason']}"
            + (f" ({e['val_exit_rate'] * 100:.2f} %)." if e.get("val_exit_rate") is not None else ".")
        )
    lines += [
        "",
        "## Resources per block (Yosys, out of context)",
        "",
        "| block | LUT | FF | CARRY4 | DSP | BRAM18 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["resources"]["per_block"].items():
        lines.append(f"| {name} | {r['LUT']:,} | {r['FF']:,} | {r['CARRY4']:,} | {r['DSP']} | {r['BRAM18']} |")
    lines += [
        "",
        f"Resources by {report['resources']['tool']}; cycles from Verilator under cocotb. Latency: the "
        f"test samples one at a time, each sent when the previous result is out; throughput: the test set "
        f"back to back. The bound is the generator's beat-exact figure for samples sent that way to the "
        f"final exit; `worst case measured` is that run simulated.",
        "",
    ]
    if report.get("hls"):
        lines += _hls_section(report["hls"])
    return "\n".join(lines)


def _hls_section(hls: dict) -> list[str]:
    lines = [
        "## HLS (hls4ml)",
        "",
        f"Each block and head is its own {hls['backend']} hls4ml project; their C-sim, chained, was run on "
        f"all {hls['samples']} test samples and compared with the golden model.",
        "",
        "| project | precision in -> out | io | reuse | mismatching samples | convert s | compile s | cached |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for p in hls["projects"]:
        lines.append(
            f"| {p['name']} | {p['input_precision']} -> {p['output_precision']} | {p['io_type']} | "
            f"{p['reuse_factor']} | {hls['mismatches'][p['name']]} | {p['convert_seconds']:.2f} | "
            f"{p['compile_seconds']:.2f} | {'yes' if p['cached'] else 'no'} |"
        )
    vendor = hls["vendor"]
    lines += [
        "",
        f"Multi-exit top: `{hls['top']['tcl']}` (Vivado block design), register map `{hls['top']['register_map']}`.",
        f"Vendor tools: {vendor['skipped']}"
        if "skipped" in vendor
        else f"Vendor implementation: {vendor['implementation']}",
        "",
    ]
    return lines


def _plot(latencies: dict[str, np.ndarray], report: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    bins = np.linspace(0, max(int(v.max()) for v in latencies.values()) + 1, 40)
    for label, values in latencies.items():
        axes[0].hist(values, bins=bins, alpha=0.6, label=label)
    axes[0].set_xlabel("latency (cycles)")
    axes[0].set_ylabel("samples")
    axes[0].legend()
    rates = [e["exit_rate"] * 100 for e in report["exits"]]
    axes[1].bar([f"exit {k}\n(block {e['position']})" for k, e in enumerate(report["exits"])], rates)
    axes[1].set_ylabel("exit rate (%)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def to_html(report: dict, latencies: dict[str, np.ndarray]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(a)}</td><td>{b}</td><td>{c}</td><td>{d}</td></tr>" for a, b, c, d in _rows(report)
    )
    exits = "".join(
        f"<tr><td>{k}</td><td>{e['position']}</td><td>{'final' if e['threshold'] is None else e['threshold']}</td>"
        f"<td>{e['exit_rate'] * 100:.2f} %</td><td>{e['accuracy'] * 100:.2f} %</td></tr>"
        for k, e in enumerate(report["exits"])
    )
    blocks = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{r['LUT']:,}</td><td>{r['FF']:,}</td><td>{r['DSP']}</td>"
        f"<td>{r['BRAM18']}</td></tr>"
        for n, r in report["resources"]["per_block"].items()
    )
    title = html.escape(f"{report['design']} on {report['board']}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.3em .7em;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>{title}</h1>
<p>{html.escape(report["part"])}, {report["clock_mhz"]:g} MHz; dataset {html.escape(report["dataset"])};
{report["bit_exact"]["samples"]} test samples simulated, {report["bit_exact"]["mismatches"]} mismatches against the golden model;
fits: {"yes" if report["fits"] else "no"}.</p>
<table><tr><th></th><th>early exit</th><th>no-exit baseline</th><th>ratio</th></tr>{rows}</table>
<img alt="latency distribution and exit rates" src="data:image/png;base64,{_plot(latencies, report)}">
<h2>Exits</h2><table><tr><th>exit</th><th>block</th><th>threshold</th><th>exit rate</th><th>head accuracy</th></tr>{exits}</table>
<h2>Resources per block</h2><table><tr><th>block</th><th>LUT</th><th>FF</th><th>DSP</th><th>BRAM18</th></tr>{blocks}</table>
</body></html>
"""
