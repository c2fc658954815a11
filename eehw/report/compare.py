"""`eehw compare A B`: two designs side by side, from any two report.json files (the synth
report of ``eehw synth`` or the DSE report of ``eehw dse``, whose chosen design is compared)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

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


HINT = "give a report.json written by `eehw synth` or `eehw dse`"

#: What a report value may be: its test and how a message names it. A figure may be null (the table shows '-').
_EXPECTED = {
    "number": (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)), "a number"),
    "text": (lambda v: isinstance(v, str), "a string"),
    "list": (lambda v: isinstance(v, list), "a list"),
}


def read_report(path: str | Path) -> tuple[Path, dict]:
    """The JSON object of a report file (or of ``report.json`` in a folder). A user may point
    compare at any file, so each way it can be wrong is one line naming it."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.exists():
        raise EehwError(f"report {path} does not exist: {HINT}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EehwError(f"report {path} is not valid JSON ({exc.msg} at line {exc.lineno}): {HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EehwError(f"report {path} cannot be read ({type(exc).__name__}): {HINT}") from None
    if not isinstance(data, dict):
        raise EehwError(f"report {path} is not an eehw report (a JSON object expected, got {_kind(data)[:40]}): {HINT}")
    return path, data


def _kind(value: Any) -> str:
    """A JSON value as a message shows it: scalars as written, containers by kind."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (str, int, float)):
        return repr(value)
    return "an object" if isinstance(value, dict) else "a list" if isinstance(value, list) else type(value).__name__


class _Report:
    """Typed look-ups in one report, so a missing key or a value of the wrong type names the
    file, the dotted key and what was expected instead of raising KeyError in the table code."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path, self.data = path, data

    def fail(self, key: str, problem: str) -> NoReturn:
        raise EehwError(f"report {self.path}: key '{key}' {problem}; {HINT}")

    def get(self, key: str, expected: str = "number", required: bool = True) -> Any:
        """The value at dotted ``key`` (``chosen.measured.resources.LUT``); None when an optional key is absent."""
        value, done = self.data, []
        for part in key.split("."):
            if not isinstance(value, dict):
                self.fail(".".join(done), f"must be an object, got {_kind(value)}")
            done.append(part)
            if part not in value:
                if required:
                    self.fail(".".join(done), "missing")
                return None
            value = value[part]
        test, name = _EXPECTED[expected]
        if not test(value):
            self.fail(key, f"must be {name}, got {_kind(value)}")
        return value


def load_summary(path: str | Path) -> dict:
    """The comparable figures of one report.json, measured where the report has them."""
    r = _Report(*read_report(path))
    clock = r.get("clock_mhz", required=False)
    resources = ("LUT", "FF", "DSP", "BRAM18")
    if r.data.get("status") == "failed":
        failed = r.data.get("failed")
        reason = failed.get("reason") if isinstance(failed, dict) else None
        raise EehwError(
            f"report {r.path} is of a design the flow refused ({reason or 'no reason recorded'}); "
            f"it has no figures to compare"
        )
    if r.data.get("kind") == "dse":
        m = "chosen.measured"
        out = {
            "label": f"{r.get('design', 'text')} DSE chosen ({r.get('board', 'text')})",
            "exits": r.get("chosen.exits", "list"),
            "policy": r.get("chosen.policy", "text"),
            "accuracy": r.get("chosen.predicted.accuracy"),
            "mean_latency": r.get(f"{m}.latency_cycles.mean"),
            "p99_latency": r.get(f"{m}.latency_cycles.p99"),
            "worst_case_latency": r.get(f"{m}.worst_case_latency_cycles"),
            "throughput": r.get(f"{m}.throughput_samples_per_cycle"),
            **{k: r.get(f"{m}.resources.{k}") for k in resources},
        }
    elif "latency_cycles" in r.data and "resources" in r.data:
        exits = r.get("exits", "list", required=False) or []
        for k, e in enumerate(exits):
            if not isinstance(e, dict) or "position" not in e:
                r.fail(f"exits[{k}]", f"must be an object with 'position', got {_kind(e)}")
        out = {
            "label": f"{r.get('design', 'text')} synth ({r.get('board', 'text')})",
            "exits": [e["position"] for e in exits],
            "policy": exits[0].get("policy") if exits else None,
            "accuracy": r.get("accuracy.early_exit"),
            "mean_latency": r.get("latency_cycles.mean"),
            "p99_latency": r.get("latency_cycles.p99"),
            "worst_case_latency": r.get("latency_cycles.worst_case_measured", required=False),
            "throughput": r.get("throughput_samples_per_cycle"),
            **{k: r.get(f"resources.{k}") for k in resources},
        }
    else:
        raise EehwError(
            f"report {r.path} is neither an `eehw synth` nor an `eehw dse` report.json "
            f"(no 'kind': 'dse', and no 'latency_cycles' and 'resources'): {HINT}"
        )
    out["throughput_per_s"] = out["throughput"] * clock * 1e6 if clock and out["throughput"] else None
    out["path"] = str(r.path)
    return out


def ratio(a, b) -> float | None:
    return None if a is None or b is None or not a else b / a


def rows(a: dict, b: dict) -> list[tuple[str, str, str, str]]:
    out = [("exits", str(a["exits"]), str(b["exits"]), ""), ("policy", str(a["policy"]), str(b["policy"]), "")]
    for key, label, spec in FIGURES:
        va, vb = a.get(key), b.get(key)
        r = ratio(va, vb)
        out.append(
            (
                label,
                "-" if va is None else spec.format(va),
                "-" if vb is None else spec.format(vb),
                "-" if r is None else f"{r:.3f}x",
            )
        )
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
