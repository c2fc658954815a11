"""The flow enforces what it reports: a mismatch between levels, or a worst case above the stated
bound, stops `eehw synth` with one line naming the level and the first failing sample (exit
code 2), and the report is written as failed, never as a design that fits."""

import json

import numpy as np
import pytest

from eehw import cli, flow

TINY = """
name: tiny_enforce
seed: 0
data: {name: digits}
model:
  backbone: mlp
  widths: [16, 16]
  exits: [{after: all, head: linear}]
training: {regime: e2e, epochs: 3, batch_size: 128, lr: 0.02}
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny_enforce.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture
def without_hls(monkeypatch):
    """The RTL checks need no hls4ml projects: leave that step out to keep these tests quick."""
    monkeypatch.setattr(flow, "STEPS", [s for s in flow.STEPS if s[0] != "hls"])


def _synth_fails(config, capsys) -> str:
    assert cli.main(["synth", str(config), "--board", "pynq-z2"]) == 2
    out = capsys.readouterr()
    lines = [line for line in (out.err + out.out).splitlines() if line.startswith("eehw: error")]
    assert len(lines) == 1 and "Traceback" not in out.err
    return lines[0]


def _report():
    from eehw.paths import build_dir

    folder = build_dir() / "pynq-z2" / "tiny_enforce"
    return json.loads((folder / "report.json").read_text()), (folder / "report.md").read_text()


@pytest.mark.slow
def test_brevitas_golden_mismatch_stops_the_flow(config, monkeypatch, capsys):
    import eehw.policy.evaluate

    real = eehw.policy.evaluate.brevitas_int_logits

    def off_by_one(model, x, golden, **kw):
        logits = real(model, x, golden, **kw)
        logits[-1][5, 0] += 1  # test sample 5, final exit
        return logits

    monkeypatch.setattr(eehw.policy.evaluate, "brevitas_int_logits", off_by_one)
    line = _synth_fails(config, capsys)
    assert "golden vs Brevitas: 1 of" in line and "first: test sample 5 at exit 1" in line
    report, md = _report()
    assert report["status"] == "failed" and report["fits"] is False and "FAILED" in md


@pytest.mark.slow
def test_injected_rtl_mismatch_stops_the_flow(config, monkeypatch, capsys, without_hls):
    """One result bit forced in the simulated hardware (the class LSB of the result stream)."""
    import eehw.hw.measure

    real = eehw.hw.measure.simulate

    def corrupted(rtl, *args, **kw):
        exit_w = max(1, (len(rtl.plan.exits) - 1).bit_length())
        return real(rtl, *args, inject=f"initial force u_dut.m_tdata[{exit_w}] = 1'b1;", **kw)

    monkeypatch.setattr(eehw.hw.measure, "simulate", corrupted)
    line = _synth_fails(config, capsys)
    assert "rtl early-exit:" in line and "results differ from the golden model; first: test sample" in line
    report, md = _report()
    assert report["status"] == "failed" and "resources" not in report and "FAILED" in md
    assert report["failed"]["step"] == "simulate"


@pytest.mark.slow
def test_worst_case_above_the_stated_bound_stops_the_flow(config, monkeypatch, capsys, without_hls):
    """A stated bound a quarter of the latency bound (eehw.hw.timing), so below what the hardware
    takes on the final-exit path."""
    from eehw.hw.rtl.design import RtlDesign

    real = RtlDesign.latency_bound
    monkeypatch.setattr(RtlDesign, "latency_bound", property(lambda self: real.fget(self) // 4))
    line = _synth_fails(config, capsys)
    assert "measured worst-case latency" in line and "exceeds the stated bound" in line
    assert "every test sample forced to the final exit" in line
    assert _report()[0]["status"] == "failed"


@pytest.mark.slow
def test_hls_csim_mismatch_stops_the_flow(config, monkeypatch, capsys):
    import shutil

    from eehw.hw.hls.settings import HlsBlock
    from eehw.paths import cache_dir

    shutil.rmtree(cache_dir() / "hls_chain", ignore_errors=True)  # a cached clean check would hide the fault
    real = HlsBlock.predict

    def wrong_head(self, x):
        y = real(self, x)
        if self.name == "heads.1":
            y = np.array(y, copy=True)
            y[3, 0] += 2.0**6
        return y

    monkeypatch.setattr(HlsBlock, "predict", wrong_head)
    line = _synth_fails(config, capsys)
    assert "hls4ml C-sim: differs from the golden model (heads.1: 1 samples); first: test sample 3 at heads.1" in line
    assert _report()[0]["status"] == "failed"


@pytest.mark.slow
def test_a_design_over_the_board_budget_stops_the_flow_with_its_report(config, tmp_path, capsys, without_hls):
    board = tmp_path / "tiny_board.yaml"
    board.write_text(
        "name: tiny_board\npart: xc7z007sclg225-1\nfamily: xc7\nclock_mhz: 100\n"
        "budget: {LUT: 500, FF: 1000000, BRAM18: 100, DSP: 100}\nshell: {type: zynq7}\n"
        "description: a board too small for the design\n"
    )
    assert cli.main(["synth", str(config), "--board", str(board)]) == 2
    out = capsys.readouterr()
    lines = [line for line in (out.err + out.out).splitlines() if line.startswith("eehw: error")]
    assert len(lines) == 1 and "does not fit tiny_board (LUT over by" in lines[0] and "eehw dse" in lines[0]
    from eehw.paths import build_dir

    folder = build_dir() / "tiny_board" / "tiny_enforce"
    report = json.loads((folder / "report.json").read_text())
    assert report["status"] == "over budget" and report["fits"] is False and report["resources"]["LUT"] > 500
    assert "OVER BUDGET" in (folder / "report.md").read_text().splitlines()[0]


def test_a_verification_error_crosses_process_boundaries():
    """A DSE validation worker raises it in another process: it must unpickle there as itself
    (before, the pool saw a broken worker and the search stopped on BrokenProcessPool)."""
    import pickle

    from eehw.errors import VerificationError

    back = pickle.loads(pickle.dumps(VerificationError("fmnist_cnn_dse_88", "worst case 2374 > 2344")))
    assert isinstance(back, VerificationError)
    assert (back.level, str(back)) == ("fmnist_cnn_dse_88", "fmnist_cnn_dse_88: worst case 2374 > 2344")
