"""`eehw compare A B`: two designs side by side, from any two report.json files (the synth
report of ``eehw synth`` or the DSE report of ``eehw dse``, whose chosen design is compared)."""

from __future__ import annotations

import json
from pathlib import Path

from eehw.errors import EehwError

FIGURES = (
    ("accuracy", "accuracy", "{:.2%}"),
    ("mean_latency", "mean latency (cycles)", "{:,.1f}"),
    ("p99_latency", "p99 latency (cycles)", "{:,.1f}"),
    ("worst_case_latency", "worst-case latency (cycles)", "{:,.0f}"),
    ("throughput", "throughput (samples/cycle)", "{:.5f}"),
    ("throughput_per_s", "throughput (samples/s)", "{:,.0f}"),
    ("LUT", "LUT", "{:,.0f}"),
    ("FF", "FF", "{:,.0f}"),
    ("DSP", "DSP", "{:,.0f}"),
    ("BRAM18", "BRAM18", "{:,.0f}"),
)


def load_summary(path: str | Path) -> dict:
    """The comparable figures of one report.json, measured where the report has them."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.exists():
        raise EehwError(f"report {path} does not exist: give a report.json from `eehw synth` or `eehw dse`")
    try:
        r = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EehwError(f"report {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(r, dict):
        raise EehwError(f"report {path} is not an eehw report (a JSON object expected)")
    clock = r.get("clock_mhz")
    if r.get("kind") == "dse":
        c = r["chosen"]
        m = c["measured"]
        out = {"label": f"{r['design']} DSE chosen ({r['board']})", "exits": c["exits"], "policy": c["policy"],
               "accuracy": c["predicted"]["accuracy"], "mean_latency": m["latency_cycles"]["mean"],
               "p99_latency": m["latency_cycles"]["p99"], "worst_case_latency": m["worst_case_latency_cycles"],
               "throughput": m["throughput_samples_per_cycle"], **{k: m["resources"][k] for k in ("LUT", "FF", "DSP", "BRAM18")}}
    elif "latency_cycles" in r and "resources" in r:
        exits = [e["position"] for e in r.get("exits", [])]
        out = {"label": f"{r['design']} synth ({r['board']})", "exits": exits,
               "policy": (r.get("exits") or [{}])[0].get("policy"), "accuracy": r["accuracy"]["early_exit"],
               "mean_latency": r["latency_cycles"]["mean"], "p99_latency": r["latency_cycles"]["p99"],
               "worst_case_latency": r["latency_cycles"].get("worst_case_measured"),
               "throughput": r["throughput_samples_per_cycle"],
               **{k: r["resources"][k] for k in ("LUT", "FF", "DSP", "BRAM18")}}
    else:
        raise EehwError(f"report {path} is neither an `eehw synth` nor an `eehw dse` report.json")
    out["throughput_per_s"] = out["throughput"] * clock * 1e6 if clock and out["throughput"] else None
    out["path"] = str(path)
    return out


def ratio(a, b) -> float | None:
    return None if a is None or b is None or not a else b / a


def rows(a: dict, b: dict) -> list[tuple[str, str, str, str]]:
    out = [("exits", str(a["exits"]), str(b["exits"]), ""), ("policy", str(a["policy"]), str(b["policy"]), "")]
    for key, label, spec in FIGURES:
        va, vb = a.get(key), b.get(key)
        r = ratio(va, vb)
        out.append((label, "-" if va is None else spec.format(va), "-" if vb is None else spec.format(vb),
                    "-" if r is None else f"{r:.3f}x"))
    return out


def compare(path_a: str | Path, path_b: str | Path) -> str:
    """Print the side-by-side table (B / A ratios) and return it as plain text."""
    from rich.console import Console
    from rich.table import Table

    a, b = load_summary(path_a), load_summary(path_b)
    table = Table(title="eehw compare", caption=f"A = {a['path']}\nB = {b['path']}")
    table.add_column("")
    table.add_column(f"A: {a['label']}", justify="right")
    table.add_column(f"B: {b['label']}", justify="right")
    table.add_column("B / A", justify="right")
    for row in rows(a, b):
        table.add_row(*row)
    console = Console(record=True, width=120)
    console.print(table)
    return console.export_text()
