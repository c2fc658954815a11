"""The DSE report: report.json, report.md and a self-contained report.html (plots embedded as
PNG data URIs) under build/<board>/<config>/dse/."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from eehw.cache import atomic_write_text
from eehw.dse.characterise import RESOURCE_KEYS


def write_reports(report: dict, out_dir: Path, result=None) -> list[Path]:
    """``result`` (the SearchResult) adds the cloud of every candidate to the Pareto plots."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "report.json", out_dir / "report.md", out_dir / "report.html"]
    atomic_write_text(paths[0], json.dumps(_strip_raw(report), indent=2))
    atomic_write_text(paths[1], to_markdown(report))
    atomic_write_text(paths[2], to_html(report, result))
    return paths


def _strip_raw(report: dict) -> dict:
    """report.json keeps the measured latency distribution only as percentiles (not per sample)."""
    out = json.loads(json.dumps(report, default=_json_default))
    for key in ("chosen", "baseline"):
        _drop_raw(out[key])
    for des in out["validated"]:
        _drop_raw(des)
    return out


def _drop_raw(des: dict) -> None:
    m = des.get("measured") or {}
    for k in ("latency_cycles_raw", "exit_index"):  # per-sample arrays: the plots have them
        m.pop(k, None)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def _fmt(v, spec="{:,.0f}") -> str:
    return "-" if v is None else spec.format(v)


def _pct(v) -> str:
    return "-" if v is None else f"{v * 100:+.1f} %"


def summary_rows(report: dict) -> list[tuple[str, str, str, str]]:
    """(figure, chosen, baseline, ratio) with measured values where validated."""
    c, b = report["chosen"], report["baseline"]
    cm, bm = c["measured"], b["measured"]
    rows = [
        ("exits", str(c["exits"]), str(b["exits"]), ""),
        ("heads", ", ".join(c.get("heads", [])), ", ".join(b.get("heads", [])), ""),
        ("accuracy (test)", f"{c['predicted']['accuracy']:.2%}", f"{b['predicted']['accuracy']:.2%}", ""),
        (
            "mean latency (cycles)",
            _fmt(cm["latency_cycles"]["mean"], "{:,.1f}"),
            _fmt(bm["latency_cycles"]["mean"], "{:,.1f}"),
            f"{cm['latency_cycles']['mean'] / bm['latency_cycles']['mean']:.3f}x",
        ),
        (
            "worst-case latency (cycles)",
            _fmt(cm["worst_case_latency_cycles"]),
            _fmt(bm["worst_case_latency_cycles"]),
            f"{cm['worst_case_latency_cycles'] / bm['worst_case_latency_cycles']:.3f}x",
        ),
        (
            "throughput (samples/cycle)",
            _fmt(cm["throughput_samples_per_cycle"], "{:.5f}"),
            _fmt(bm["throughput_samples_per_cycle"], "{:.5f}"),
            f"{cm['throughput_samples_per_cycle'] / bm['throughput_samples_per_cycle']:.3f}x",
        ),
    ]
    for r in RESOURCE_KEYS:
        a, z = cm["resources"][r], bm["resources"][r]
        rows.append((r, _fmt(a), _fmt(z), f"{a / z:.3f}x" if z else "-"))
    return rows


RATIO_HEADER = ["ratio", "predicted", "measured", "early-exit design", "against baseline"]
RATIO_NOTE = (
    "Each ratio compares the baseline at its best folding for it: the cheapest no-exit folding at the "
    "fastest baseline's throughput, and the fastest no-exit folding within the early-exit design's LUTs."
)


def ratio_rows(report: dict) -> list[tuple[str, str, str, str, str]]:
    names = {
        "throughput_at_equal_luts": "throughput at equal LUTs",
        "luts_at_equal_throughput": "LUTs at equal throughput",
        "mean_latency_at_equal_accuracy": f"mean latency at <= {report['ratios'].get('accuracy_tolerance_pp', 0.5)} pp accuracy loss",
    }
    rows = []
    for key, label in names.items():
        r = report["ratios"].get(key)
        if not r:
            rows.append((label, "no early-exit design qualifies", "-", "-", "-"))
            continue
        if r.get("ignores_worst_case_ceiling"):
            label += " (only beyond the worst-case latency ceiling)"
        if r.get("misses"):
            label += f" (not measured: {'; '.join(r['misses'])})"
        if r.get("passed_over"):
            label += f" (next best, passed over: {'; '.join(r['passed_over'])})"
        rows.append(
            (
                label,
                f"{r['ratio']:.3f}x",
                _fmt(r.get("measured_ratio"), "{:.3f}x"),
                str(r.get("design")),
                str(r.get("baseline_design")),
            )
        )
    return rows


CEILING_HEADER = [
    "ceiling (x baseline)",
    "cycles",
    "LUTs at equal throughput",
    "throughput at equal LUTs",
    "worst case of that design",
]
CEILING_NOTE = (
    "The ratios the search predicts at other worst-case ceilings: a rarely reached block folded "
    "deeper costs fewer LUTs and lengthens the final-exit path. Set the ceiling with "
    "dse.worst_latency_factor or --worst-latency-factor / --max-worst-latency."
)


def ceiling_rows(report: dict) -> list[list[str]]:
    return [
        [
            "none" if c["factor"] is None else f"{c['factor']:g}",
            _fmt(c["max_worst_latency"]),
            _fmt(c["luts_at_equal_throughput"], "{:.3f}x"),
            _fmt(c["throughput_at_equal_luts"], "{:.3f}x"),
            _fmt(c["worst_latency"]),
        ]
        for c in report.get("ceiling_sweep", [])
    ]


def validation_rows(report: dict) -> list[list[str]]:
    rows = []
    for des in report["validated"]:
        e = des["errors"]
        m = des["measured"]["bit_exact"]
        exits = ", ".join(f"{p} {h}" for p, h in zip(des["exits"], des.get("heads", [""] * len(des["exits"]))))
        rows.append(
            [
                des["id"],
                exits,
                des["policy"],
                f"{e['mean_latency']['predicted']:,.1f} / {e['mean_latency']['measured']:,.1f}",
                _pct(e["mean_latency"]["error"]),
                f"{e['worst_latency']['predicted']:,.0f} / {e['worst_latency']['measured']:,.0f}",
                _pct(e["worst_latency"]["error"]),
                f"{e['throughput']['predicted']:.5f} / {e['throughput']['measured']:.5f}",
                _pct(e["throughput"]["error"]),
                f"{e['LUT']['predicted']:,.0f} / {e['LUT']['measured']:,.0f}",
                _pct(e["LUT"]["error"]),
                f"{m['mismatches']} / {m['samples']}",
            ]
        )
    return rows


VALIDATION_HEADER = [
    "design",
    "exits (block head)",
    "policy",
    "mean latency pred / meas",
    "err",
    "worst case pred / meas",
    "err",
    "throughput pred / meas",
    "err",
    "LUT pred / meas",
    "err",
    "golden mismatches",
]


def misses(report: dict, cycles_tol: float = 0.05, lut_tol: float = 0.10) -> list[str]:
    """Where the composition model misses its aim (cycles within 5 %, LUTs within 10 %)."""
    out = []
    for des in report["validated"]:
        for key, tol in (
            ("mean_latency", cycles_tol),
            ("worst_latency", cycles_tol),
            ("throughput", cycles_tol),
            ("LUT", lut_tol),
        ):
            err = des["errors"][key]["error"]
            if err is not None and abs(err) > tol:
                out.append(f"{des['id']}: {key} off by {err * 100:+.1f} % (aim {tol * 100:.0f} %)")
    return out


def _md_table(header: list[str], rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(x) for x in r) + " |" for r in rows
    ]


def to_markdown(report: dict) -> str:
    s, c = report["search"], report["chosen"]
    ch = report["characterisation"]
    lines = [
        f"# Design-space exploration: {report['design']} on {report['board']} ({report['part']}, "
        f"{report['clock_mhz']:g} MHz)",
        "",
        f"Objective **{report['objective']}**; constraints: min accuracy "
        f"{_fmt(report['constraints']['min_accuracy'], '{:.2%}')}, max mean latency "
        f"{_fmt(report['constraints']['max_latency'])} cycles, max worst-case latency "
        f"{_fmt(report['constraints'].get('max_worst_latency'))} cycles, min throughput "
        f"{_fmt(report['constraints']['min_throughput'], '{:.5f}')} samples/cycle; board budget "
        + ", ".join(f"{k} {v:,}" for k, v in report["budget"].items())
        + ".",
        "",
        f"Characterisation: {ch['synthesised']} modules synthesised now, {ch['cached']} from the cache "
        f"({ch['seconds']:.1f} s), lane levels {ch['lane_levels']}. Search: {s['candidates']:,} candidates "
        f"evaluated over {s['exit_configurations']} exit configurations in {s['seconds']:.2f} s "
        f"(methods {s['methods']}; exhaustive up to {s['exhaustive_limit']} foldings per configuration), "
        f"{s['within_budget']:,} within budget, {s['feasible']:,} feasible, {s['pareto']} on the Pareto front.",
        "",
        "## Chosen design against the no-exit baseline (measured)",
        "",
    ]
    lines += _md_table(["", "chosen", "baseline", "ratio"], summary_rows(report))
    lines += [
        "",
        f"Thresholds ({c['policy']}): {c['thresholds']}; folding (SIMD, PE): "
        + ", ".join(f"{k} {tuple(v)}" for k, v in c["folding"].items()),
        "",
    ]
    lines += ["## Ratios against the baseline", ""]
    lines += [RATIO_NOTE, ""]
    lines += _md_table(RATIO_HEADER, ratio_rows(report))
    if report.get("ceiling_sweep"):
        lines += ["", "## The worst-case ceiling's price (predicted)", "", CEILING_NOTE, ""]
        lines += _md_table(CEILING_HEADER, ceiling_rows(report))
    lines += ["", "## Exits of the chosen design", ""]
    meas = c["measured"]["exit_rates"]
    rows = []
    for k, pos in enumerate(c["exits"]):
        thr = c["thresholds"][k] if k < len(c["thresholds"]) else "final"
        head = c["heads"][k] if c.get("heads") else "-"
        rows.append([k, pos, head, thr, f"{c['exit_fractions'][k]:.2%}", "-" if meas is None else f"{meas[k]:.2%}"])
    lines += _md_table(
        ["exit", "after block", "head", "threshold", "exit rate (predicted)", "exit rate (measured)"], rows
    )
    lines += ["", "## Predicted vs measured (whole designs, full test set)", ""]
    lines += _md_table(VALIDATION_HEADER, validation_rows(report))
    miss = misses(report)
    lines += ["", "Model misses its aim (cycles 5 %, LUTs 10 %): " + ("; ".join(miss) if miss else "none") + "."]
    lines += ["", "## Resources of the chosen design per block (predicted, out of context)", ""]
    rows = [
        [
            u["unit"],
            u["lanes"],
            u["ii"],
            u["latency"],
            *[u["resources"][r] for r in RESOURCE_KEYS],
            f"{u['resources']['LUT'] / report['budget']['LUT']:.2%}",
        ]
        for u in c["units"]
    ]
    lines += _md_table(["unit", "lanes", "II", "latency", *RESOURCE_KEYS, "LUT of budget"], rows)
    lines += ["", "Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items()), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# HTML with embedded plots


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plots(report: dict, result=None) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    front = report["pareto"]
    c, b = report["chosen"], report["baseline"]
    cloud = None
    if result is not None:
        t = result.table
        idx = np.flatnonzero(result.fits)
        if len(idx) > 20000:
            idx = np.random.default_rng(0).choice(idx, 20000, replace=False)
        cloud = {k: t[k][idx] for k in ("accuracy", "mean_latency", "throughput", "LUT")}
    for name, (x, y, xl, yl) in {
        "pareto_accuracy_latency": ("mean_latency", "accuracy", "mean latency (cycles)", "accuracy"),
        "pareto_throughput_luts": ("LUT", "throughput", "LUTs", "throughput (samples/cycle)"),
    }.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        if cloud is not None:
            ax.scatter(cloud[x], cloud[y], s=3, c="0.8", label="candidates within budget")
        ax.scatter([p[x] for p in front], [p[y] for p in front], s=12, c="tab:blue", label="Pareto front")
        ax.scatter([c["predicted"][x]], [c["predicted"][y]], s=80, marker="*", c="tab:red", label="chosen")
        ax.scatter([b["predicted"][x]], [b["predicted"][y]], s=60, marker="s", c="k", label="no-exit baseline")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        out[name] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    k = np.arange(len(c["exits"]))
    ax.bar(k - 0.2, c["exit_fractions"], 0.4, label="predicted (cached logits)")
    ax.bar(k + 0.2, c["measured"]["exit_rates"], 0.4, label="measured (RTL)")
    ax.set_xticks(k, [f"exit {i}\n(block {p})" for i, p in enumerate(c["exits"])])
    ax.set_ylabel("fraction of test samples")
    ax.legend(fontsize=7)
    out["exit_rates"] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, des in (("chosen", c), ("no-exit baseline", b)):
        raw = np.sort(np.asarray(des["measured"].get("latency_cycles_raw", [])))
        if raw.size:
            ax.step(raw, np.arange(1, raw.size + 1) / raw.size, where="post", label=label)
    ax.set_xlabel("latency (cycles, measured, one sample at a time)")
    ax.set_ylabel("CDF")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    out["latency_cdf"] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 0.35 * (len(c["units"]) + 3) + 1))
    labels = [u["unit"] for u in c["units"]] + ["glue (decision, gates, forks, merge)", "total"]
    unit_lut = [u["resources"]["LUT"] for u in c["units"]]
    total = c["predicted"]["LUT"]
    values = np.array(unit_lut + [total - sum(unit_lut), total]) / report["budget"]["LUT"] * 100
    ax.barh(labels, values, color=["tab:blue"] * len(unit_lut) + ["tab:gray", "tab:red"])
    ax.set_xlabel(f"% of the board's {report['budget']['LUT']:,} LUTs")
    ax.invert_yaxis()
    out["resources_per_block"] = _png(fig)
    return out


def _html_table(header, rows, table_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(report: dict, result=None) -> str:
    imgs = plots(report, result)
    md = to_markdown(report).splitlines()
    intro = " ".join(html.escape(line) for line in md[2:7] if line)
    titles = {
        "pareto_accuracy_latency": "Pareto front: accuracy vs mean latency",
        "pareto_throughput_luts": "Pareto front: throughput vs LUTs",
        "exit_rates": "Exit rates of the chosen design",
        "latency_cdf": "Latency distribution, chosen vs baseline (measured)",
        "resources_per_block": "Resources of the chosen design per block vs the board budget",
    }
    figs = "".join(
        f'<figure><img id="{k}" alt="{html.escape(titles[k])}" src="{v}"><figcaption>'
        f"{html.escape(titles[k])}</figcaption></figure>"
        for k, v in imgs.items()
    )
    c = report["chosen"]
    units = [
        [u["unit"], u["lanes"], u["ii"], u["latency"], *[u["resources"][r] for r in RESOURCE_KEYS]] for u in c["units"]
    ]
    miss = misses(report)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>eehw DSE {html.escape(report["design"])} on {html.escape(report["board"])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} figure{{display:inline-block;margin:8px}}</style></head>
<body><h1>Design-space exploration: {html.escape(report["design"])} on {html.escape(report["board"])}</h1>
<p>{intro}</p>
<h2>Chosen design vs the no-exit baseline (measured)</h2>
{_html_table(["", "chosen", "baseline", "ratio"], summary_rows(report))}
<p>Thresholds ({html.escape(c["policy"])}): {html.escape(str(c["thresholds"]))}.</p>
<h2>Ratios against the baseline</h2>
<p>{RATIO_NOTE}</p>
{_html_table(RATIO_HEADER, ratio_rows(report))}
<h2>The worst-case ceiling's price (predicted)</h2>
<p>{CEILING_NOTE}</p>
{_html_table(CEILING_HEADER, ceiling_rows(report))}
<h2>Predicted vs measured</h2>
{_html_table(VALIDATION_HEADER, validation_rows(report), "validation")}
<p>Model misses its aim (cycles 5 %, LUTs 10 %): {html.escape("; ".join(miss) if miss else "none")}.</p>
<h2>Chosen design per block</h2>
{_html_table(["unit", "lanes", "II", "latency", *RESOURCE_KEYS], units)}
<h2>Plots</h2>
{figs}
</body></html>
"""
