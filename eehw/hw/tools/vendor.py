"""AMD/Xilinx vendor tools, when installed: Vitis HLS synthesis, Vivado block design to bitstream,
and the parsers of their reports.

The open-source path (Verilator, Yosys) is the default and never depends on this module: when
``vitis_hls``/``vivado`` are not on PATH, ``detect()`` says so and ``absence_note`` gives the one
line the caller prints before it carries on. The parsers read the tools' own files:
``<top>_csynth.xml`` (Vitis HLS), ``report_utilization`` and ``report_timing_summary`` text
(Vivado); a report missing a field is an error naming the file and the field, never a silent None.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from eehw.board import Resources
from eehw.errors import EehwError
from eehw.hw.tools.run import run_tool

VITIS_HLS = "vitis_hls"
VITIS_RUN = "vitis-run"  # Vitis 2024+ unified command; hls4ml 1.3.0's Vitis build() uses it
VIVADO = "vivado"
HLS4ML_BUILD_OPTIONS = {
    "reset": 1,
    "csim": 0,
    "synth": 1,
    "cosim": 0,
    "validation": 0,
    "export": 1,
    "vsynth": 0,
    "fifo_opt": 0,
}


@dataclass(frozen=True)
class VendorTools:
    """Paths of the vendor executables found on PATH (None: not installed)."""

    vitis_hls: Path | None
    vivado: Path | None
    vitis_run: Path | None = None

    @property
    def hls(self) -> bool:
        return self.vitis_hls is not None or self.vitis_run is not None

    @property
    def complete(self) -> bool:
        return self.hls and self.vivado is not None

    def hls_command(self, script: str) -> list[str]:
        """Vitis HLS on a Tcl script: ``vitis-run --tcl S --mode hls`` when there, else ``vitis_hls -f S``."""
        if self.vitis_run is not None:
            return [str(self.vitis_run), "--tcl", script, "--mode", "hls"]
        return [str(_require(self.vitis_hls, VITIS_HLS)), "-f", script]


def detect() -> VendorTools:
    found = {name: shutil.which(name) for name in (VITIS_HLS, VIVADO, VITIS_RUN)}
    return VendorTools(*(Path(found[n]) if found[n] else None for n in (VITIS_HLS, VIVADO, VITIS_RUN)))


def absence_note(tools: VendorTools) -> str | None:
    """One line for the user when a vendor tool is missing; None when both are there."""
    missing = [name for name, there in ((VITIS_HLS, tools.hls), (VIVADO, tools.vivado is not None)) if not there]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} not on PATH: skipping vendor HLS synthesis and bitstream; "
        "resources and cycles come from the open-source path (Yosys, Verilator)"
    )


# ---------------------------------------------------------------------------------------------
# Report parsers


@dataclass(frozen=True)
class HlsReport:
    """What Vitis HLS estimates for one top function (csynth.xml)."""

    top: str
    part: str
    target_clock_ns: float
    estimated_clock_ns: float
    best_latency: int  # cycles
    worst_latency: int
    interval_min: int  # initiation interval, cycles
    interval_max: int
    resources: Resources  # LUT, FF, BRAM18 (BRAM_18K), DSP

    @property
    def fmax_mhz(self) -> float:
        return 1000.0 / self.estimated_clock_ns


@dataclass(frozen=True)
class UtilizationReport:
    """Vivado report_utilization: BRAM18 counts RAMB18 halves (a Block RAM Tile is two)."""

    resources: Resources
    bram_tiles: float


@dataclass(frozen=True)
class TimingReport:
    """Vivado report_timing_summary, Design Timing Summary row."""

    wns_ns: float  # worst negative (setup) slack; >= 0 means timing met
    tns_ns: float
    whs_ns: float  # worst hold slack
    ths_ns: float

    @property
    def met(self) -> bool:
        return self.wns_ns >= 0 and self.whs_ns >= 0


def parse_csynth_xml(path: Path) -> HlsReport:
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise EehwError(f"cannot read Vitis HLS report {path}: {exc}") from None

    def text(xpath: str) -> str:
        node = root.find(xpath)
        if node is None or node.text is None or not node.text.strip():
            raise EehwError(f"Vitis HLS report {path} has no {xpath.lstrip('./')}; is it a csynth.xml?")
        return node.text.strip()

    def cycles(xpath: str) -> int:
        value = text(xpath)
        if not value.isdigit():  # "undef" when a loop bound is unknown
            raise EehwError(
                f"Vitis HLS report {path}: {xpath.rsplit('/', 1)[-1]} is '{value}', not a "
                "cycle count; give every loop a constant trip count"
            )
        return int(value)

    def resource(*names: str) -> int:
        for name in names:  # Vivado HLS says DSP48E, Vitis HLS says DSP
            node = root.find(f"./AreaEstimates/Resources/{name}")
            if node is not None and node.text is not None:
                return int(node.text.strip())
        raise EehwError(f"Vitis HLS report {path} has no AreaEstimates/Resources/{names[0]}")

    latency = "./PerformanceEstimates/SummaryOfOverallLatency"
    return HlsReport(
        top=text("./UserAssignments/TopModelName"),
        part=text("./UserAssignments/Part"),
        target_clock_ns=float(text("./UserAssignments/TargetClockPeriod")),
        estimated_clock_ns=float(text("./PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod")),
        best_latency=cycles(f"{latency}/Best-caseLatency"),
        worst_latency=cycles(f"{latency}/Worst-caseLatency"),
        interval_min=cycles(f"{latency}/Interval-min"),
        interval_max=cycles(f"{latency}/Interval-max"),
        resources=Resources(
            LUT=resource("LUT"), FF=resource("FF"), BRAM18=resource("BRAM_18K"), DSP=resource("DSP", "DSP48E")
        ),
    )


def _report_lines(path: Path, kind: str) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise EehwError(f"cannot read Vivado {kind} report {path}: {exc}") from None


def _table_rows(lines: list[str]) -> dict[str, list[str]]:
    """First occurrence of every '| name | cells... |' row, keyed by the name without '*'."""
    rows: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells and cells[0]:
                rows.setdefault(cells[0].rstrip("*").strip(), cells[1:])
    return rows


def parse_utilization(path: Path) -> UtilizationReport:
    """Vivado ``report_utilization`` text (7-series names; UltraScale says CLB instead of Slice)."""
    path = Path(path)
    rows = _table_rows(_report_lines(path, "utilization"))

    def used(*names: str) -> float:
        for name in names:
            if name in rows and rows[name]:
                try:
                    return float(rows[name][0])
                except ValueError:
                    break
        raise EehwError(
            f"Vivado utilization report {path} has no '{names[0]}' row; pass the output of report_utilization"
        )

    tiles = used("Block RAM Tile")
    return UtilizationReport(
        resources=Resources(
            LUT=int(used("Slice LUTs", "CLB LUTs")),
            FF=int(used("Slice Registers", "CLB Registers")),
            BRAM18=int(round(tiles * 2)),
            DSP=int(used("DSPs")),
        ),
        bram_tiles=tiles,
    )


def parse_timing_summary(path: Path) -> TimingReport:
    """Vivado ``report_timing_summary``: the row under the WNS(ns) header of the design summary."""
    path = Path(path)
    lines = _report_lines(path, "timing")
    for i, line in enumerate(lines):
        header = line.split()
        if header[:1] != ["WNS(ns)"]:
            continue
        for row in lines[i + 1 :]:
            values = row.split()
            if not values or set(row.strip()) <= {"-", " "}:
                continue
            columns = _timing_columns(header)
            try:
                numbers = {name: float(values[pos]) for name, pos in columns.items()}
            except (ValueError, IndexError):
                raise EehwError(f"Vivado timing report {path}: cannot read the slack row '{row.strip()}'") from None
            return TimingReport(
                wns_ns=numbers["WNS(ns)"],
                tns_ns=numbers["TNS(ns)"],
                whs_ns=numbers["WHS(ns)"],
                ths_ns=numbers["THS(ns)"],
            )
    raise EehwError(
        f"Vivado timing report {path} has no Design Timing Summary (WNS) table; "
        "pass the output of report_timing_summary"
    )


def _timing_columns(header: list[str]) -> dict[str, int]:
    """Value positions of the slack columns; multi-word headers ('TNS Failing Endpoints') count once."""
    positions, position, words = {}, 0, iter(header)
    for word in words:
        if word.endswith("(ns)"):
            positions[word] = position
            position += 1
        elif word in ("TNS", "THS", "TPWS"):
            next(words, None), next(words, None)  # '<X> Failing Endpoints' / '<X> Total Endpoints'
            position += 1
    missing = [n for n in ("WNS(ns)", "TNS(ns)", "WHS(ns)", "THS(ns)") if n not in positions]
    if missing:
        raise EehwError(f"timing summary header lacks {', '.join(missing)}")
    return positions


# ---------------------------------------------------------------------------------------------
# Running the tools (batch mode); each returns the parsed report.


VENDOR_TIMEOUT_S = 12 * 3600  # implementation of a full xc7z020 design takes about an hour


def _run(cmd: list[str], cwd: Path, log: Path, what: str) -> None:
    run_tool(cmd, what=what, timeout=VENDOR_TIMEOUT_S, cwd=cwd, log=log)


def _require(path: Path | None, name: str) -> Path:
    if path is None:
        raise EehwError(f"{name} is not on PATH; source the Vitis/Vivado settings64.sh first")
    return path


def run_hls4ml_synthesis(project_dir: Path, tools: VendorTools, top: str = "myproject") -> HlsReport:
    """C synthesis and IP export of one hls4ml project: its build_prj.tcl reads the options from
    build_opt.tcl (``array set opt``), as hls4ml 1.3.0's Vitis ``build()`` writes them."""
    if not tools.hls:
        raise EehwError(f"{VITIS_HLS} is not on PATH; source the Vitis settings64.sh first")
    project_dir = Path(project_dir)
    options = "".join(f"    {k} {v}\n" for k, v in HLS4ML_BUILD_OPTIONS.items())
    (project_dir / "build_opt.tcl").write_text(f"array set opt {{\n{options}}}\n")
    _run(
        tools.hls_command("build_prj.tcl"),
        project_dir,
        project_dir / "vitis_hls_synth.log",
        f"Vitis HLS synthesis of {project_dir.name}",
    )
    return parse_csynth_xml(find_csynth_report(project_dir, top))


def run_hls_script(script: Path, tools: VendorTools, top: str) -> HlsReport:
    """Vitis HLS on one of our Tcl scripts (the top's small IPs), from the script's folder."""
    if not tools.hls:
        raise EehwError(f"{VITIS_HLS} is not on PATH; source the Vitis settings64.sh first")
    script = Path(script)
    _run(tools.hls_command(script.name), script.parent, script.with_suffix(".log"), f"Vitis HLS on {script}")
    return parse_csynth_xml(find_csynth_report(script.parent, top))


def find_csynth_report(folder: Path, top: str) -> Path:
    found = sorted(Path(folder).glob(f"**/syn/report/{top}_csynth.xml"))
    if not found:
        raise EehwError(f"no {top}_csynth.xml under {folder}; did C synthesis run?")
    return found[0]


def run_vivado_batch(script: Path, tools: VendorTools) -> None:
    """``vivado -mode batch -source script`` from the script's folder."""
    exe = _require(tools.vivado, VIVADO)
    script = Path(script)
    _run(
        [str(exe), "-mode", "batch", "-nojournal", "-notrace", "-source", script.name],
        script.parent,
        script.with_suffix(".log"),
        f"Vivado on {script}",
    )


def implementation_reports(folder: Path) -> tuple[UtilizationReport, TimingReport]:
    """The reports the generated block-design script writes after implementation."""
    folder = Path(folder)
    return parse_utilization(folder / "utilization.rpt"), parse_timing_summary(folder / "timing_summary.rpt")


@dataclass(frozen=True)
class OverlayBuild:
    """What the vendor flow measured: HLS estimates per IP, and the implemented overlay."""

    hls: dict[str, HlsReport]
    utilization: UtilizationReport
    timing: TimingReport
    bitstream: Path
    hwh: Path

    def summary(self) -> dict:
        """JSON-ready figures for the design report."""
        return {
            "hls": {
                name: {
                    "latency_best": r.best_latency,
                    "latency_worst": r.worst_latency,
                    "ii_min": r.interval_min,
                    "ii_max": r.interval_max,
                    "clock_estimated_ns": r.estimated_clock_ns,
                    "clock_target_ns": r.target_clock_ns,
                    **r.resources.as_dict(),
                }
                for name, r in self.hls.items()
            },
            "implementation": {
                **self.utilization.resources.as_dict(),
                "wns_ns": self.timing.wns_ns,
                "whs_ns": self.timing.whs_ns,
                "timing_met": self.timing.met,
            },
            "bitstream": str(self.bitstream),
        }


def build_overlay(hls_projects: dict[str, Path], top, tools: VendorTools) -> OverlayBuild:
    """HLS synthesis of every hls4ml block project (name -> project folder, name = its top
    function) and of the top's small IPs, then the block design to a bitstream.

    ``top`` is the ``eehw.hw.hls.top.TopFiles`` of the design. The block IPs must be io_stream
    projects (AXI-Stream ports) for the block design to connect them.
    """
    reports = {name: run_hls4ml_synthesis(path, tools, top=name) for name, path in hls_projects.items()}
    for script, ip in zip(top.ip_scripts, top.ips):
        reports[ip] = run_hls_script(script, tools, ip)
    run_vivado_batch(top.tcl, tools)
    utilization, timing = implementation_reports(top.tcl.parent)
    design = top.register_map.parent
    bits = sorted(design.glob("*.bit"))
    hwh = [b.with_suffix(".hwh") for b in bits if b.with_suffix(".hwh").is_file()]
    if not bits or not hwh:
        raise EehwError(f"Vivado finished but left no .bit/.hwh pair in {design}; see {top.tcl.with_suffix('.log')}")
    return OverlayBuild(reports, utilization, timing, bits[0], hwh[0])
