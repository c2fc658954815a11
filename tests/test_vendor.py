"""Vendor-tool detection and report parsers, on report files written in the vendors' formats
(tests/data/vendor/); expected figures are read off those files by eye."""

from pathlib import Path

import pytest

from eehw.board import Resources
from eehw.errors import EehwError
from eehw.hw.tools import vendor

DATA = Path(__file__).parent / "data" / "vendor"


def test_vitis_hls_csynth():
    report = vendor.parse_csynth_xml(DATA / "decision_csynth.xml")
    assert report.top == "eehw_decision_exit0"
    assert report.part == "xc7z020-clg400-1"
    assert (report.target_clock_ns, report.estimated_clock_ns) == (10.0, 6.912)
    assert (report.best_latency, report.worst_latency) == (4, 5)
    assert (report.interval_min, report.interval_max) == (1, 1)
    assert report.resources == Resources(LUT=687, FF=412, BRAM18=0, DSP=0)
    assert report.fmax_mhz == pytest.approx(144.68, abs=0.01)


def test_vivado_hls_csynth_names_dsp48e():
    report = vendor.parse_csynth_xml(DATA / "block0_csynth_vivado_hls.xml")
    assert (report.best_latency, report.worst_latency, report.interval_min, report.interval_max) == (131, 149, 64, 66)
    assert report.resources == Resources(LUT=4470, FF=3051, BRAM18=6, DSP=17)


def test_csynth_undefined_latency_is_an_error():
    with pytest.raises(EehwError, match="Worst-caseLatency is 'undef'"):
        vendor.parse_csynth_xml(DATA / "undef_csynth.xml")


def test_csynth_not_a_report(tmp_path):
    bad = tmp_path / "x_csynth.xml"
    bad.write_text("<profile><UserAssignments/></profile>")
    with pytest.raises(EehwError, match="has no UserAssignments/TopModelName"):
        vendor.parse_csynth_xml(bad)
    with pytest.raises(EehwError, match="cannot read"):
        vendor.parse_csynth_xml(tmp_path / "missing.xml")


def test_vivado_utilization():
    report = vendor.parse_utilization(DATA / "utilization_routed.rpt")
    # 23.5 Block RAM tiles = 47 RAMB18 halves
    assert report.resources == Resources(LUT=14873, FF=18224, BRAM18=47, DSP=42)
    assert report.bram_tiles == 23.5


def test_vivado_utilization_synth_hls4ml_style(tmp_path):
    """Post-synthesis reports mark 'Slice LUTs*' and have no Prohibited column."""
    text = (DATA / "utilization_routed.rpt").read_text()
    text = text.replace(
        "| Slice LUTs                 | 14873 |     0 |          0 |",
        "| Slice LUTs*                |  1526 |     0 |          0 |",
    )
    (tmp_path / "u.rpt").write_text(text)
    assert vendor.parse_utilization(tmp_path / "u.rpt").resources.LUT == 1526


def test_vivado_utilization_wrong_file():
    with pytest.raises(EehwError, match="has no '(Block RAM Tile|Slice LUTs)' row"):
        vendor.parse_utilization(DATA / "timing_summary.rpt")


def test_vivado_timing_met():
    report = vendor.parse_timing_summary(DATA / "timing_summary.rpt")
    assert (report.wns_ns, report.tns_ns, report.whs_ns, report.ths_ns) == (1.873, 0.0, 0.021, 0.0)
    assert report.met


def test_vivado_timing_failing():
    report = vendor.parse_timing_summary(DATA / "timing_summary_failing.rpt")
    assert (report.wns_ns, report.tns_ns) == (-0.412, -3.906)
    assert not report.met


def test_vivado_timing_wrong_file():
    with pytest.raises(EehwError, match="no Design Timing Summary"):
        vendor.parse_timing_summary(DATA / "utilization_routed.rpt")


def test_detect_absent_tools(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    tools = vendor.detect()
    assert tools == vendor.VendorTools(None, None)
    note = vendor.absence_note(tools)
    assert "vitis_hls and vivado not on PATH" in note and "\n" not in note
    with pytest.raises(EehwError, match="vitis_hls is not on PATH"):
        vendor.run_hls4ml_synthesis(tmp_path, tools)


def test_detect_present_tools(monkeypatch, tmp_path):
    for name in ("vitis_hls", "vivado"):
        exe = tmp_path / name
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    tools = vendor.detect()
    assert tools.complete and tools.vivado == tmp_path / "vivado"
    assert vendor.absence_note(tools) is None


def test_failing_tool_names_its_log(monkeypatch, tmp_path):
    exe = tmp_path / "vivado"
    exe.write_text("#!/bin/sh\necho boom\nexit 3\n")
    exe.chmod(0o755)
    script = tmp_path / "bd.tcl"
    script.write_text("")
    with pytest.raises(EehwError, match=r"exit 3; see .*bd\.log"):
        vendor.run_vivado_batch(script, vendor.VendorTools(None, exe))
    assert "boom" in (tmp_path / "bd.log").read_text()


FAKE_HLS = r"""#!{python}
# Stand-in for vitis_hls -f SCRIPT: writes the csynth.xml Vitis HLS would, for the script's top.
import pathlib, re, sys
script = pathlib.Path(sys.argv[sys.argv.index("-f") + 1]).read_text()
if "set_top" in script:
    top = re.search(r"set_top (\w+)", script).group(1)
else:  # hls4ml's build_prj.tcl: the project name is in project.tcl, the options in build_opt.tcl
    top = re.search(r'set project_name "(\w+)"', pathlib.Path("project.tcl").read_text()).group(1)
    assert re.search(r"export\s+1", pathlib.Path("build_opt.tcl").read_text())
report = pathlib.Path(f"{{top}}_prj/solution1/syn/report/{{top}}_csynth.xml")
report.parent.mkdir(parents=True, exist_ok=True)
report.write_text(pathlib.Path("{data}/decision_csynth.xml").read_text().replace("eehw_decision_exit0", top))
"""

FAKE_VIVADO = r"""#!{python}
# Stand-in for vivado -mode batch -source SCRIPT: leaves the reports and the bitstream behind.
import pathlib, shutil, sys
assert sys.argv[1:3] == ["-mode", "batch"]
for name in ("utilization_routed.rpt", "timing_summary.rpt"):
    shutil.copy("{data}/" + name, name.replace("_routed", ""))
pathlib.Path("d.bit").write_bytes(b"bit")
pathlib.Path("d.hwh").write_text("hwh")
"""


def test_build_overlay_with_stand_in_tools(tmp_path, monkeypatch):
    """The vendor flow's plumbing: HLS per block project and per small IP, Vivado, reports read back."""
    import sys

    from eehw.board import load_board
    from eehw.hw.hls.top import Stream, TopDesign, write_hls_top
    from eehw.hw.plan import DecisionFormat
    from eehw.policy.policies import PolicyName

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("vitis_hls", FAKE_HLS), ("vivado", FAKE_VIVADO)):
        exe = bin_dir / name
        exe.write_text(text.format(python=sys.executable, data=DATA))
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    tools = vendor.detect()
    assert tools.complete and tools.vitis_run is None

    design = TopDesign(
        name="d",
        blocks=("b0", "b1"),
        outputs=(Stream(8, 4), Stream(8, 4)),
        input=Stream(4, 8),
        input_signed=False,
        exits=(0, 1),
        heads=("h0", "h1"),
        fmt=DecisionFormat(PolicyName.MARGIN, 10, 16, 8),
    )
    top = write_hls_top(design, load_board("pynq-z2"), tmp_path / "design")
    projects = {}
    for name in ("b0", "b1", "h0", "h1"):
        folder = tmp_path / "design" / "hls" / name
        folder.mkdir(parents=True)
        (folder / "project.tcl").write_text(f'set project_name "{name}"\n')
        (folder / "build_prj.tcl").write_text("source project.tcl\nsource build_opt.tcl\n")
        projects[name] = folder
    built = vendor.build_overlay(projects, top, tools)
    assert set(built.hls) == {"b0", "b1", "h0", "h1", *top.ips}
    assert built.hls["h1"].top == "h1" and built.hls["eehw_merge"].interval_min == 1
    assert built.utilization.resources.LUT == 14873 and built.timing.met
    assert built.bitstream.name == "d.bit" and built.hwh.name == "d.hwh"
    summary = built.summary()
    assert summary["implementation"]["wns_ns"] == 1.873 and summary["hls"]["b0"]["LUT"] == 687
    import re

    options = dict(re.findall(r"^\s+(\w+)\s+(\d)$", (projects["b0"] / "build_opt.tcl").read_text(), re.M))
    assert options == {
        "reset": "1",
        "csim": "0",
        "synth": "1",
        "cosim": "0",
        "validation": "0",
        "export": "1",
        "vsynth": "0",
        "fifo_opt": "0",
    }
