"""The timing estimate (eehw.hw.tools.fmax): Yosys sta on two small registered circuits whose logic depth
is known by construction, and the warning rule computed by hand."""

import pytest

from eehw.errors import EehwError
from eehw.hw.tools.fmax import critical_path, timing_summary

CIRCUIT = """
module {name} (input wire clk, input wire [{w}:0] a, output reg q);
  reg [{w}:0] r;
  always @(posedge clk) begin
    r <= a;
    q <= {expr};
  end
endmodule
"""


@pytest.mark.slow
def test_a_deeper_circuit_has_the_longer_estimated_path(tmp_path):
    # One register bit to another: a wire; 256 bits XOR-reduced: at least log6(256) = 4 LUT levels.
    wire = tmp_path / "wire.v"
    wire.write_text(CIRCUIT.format(name="wire_path", w=0, expr="r[0]"))
    deep = tmp_path / "deep.v"
    deep.write_text(CIRCUIT.format(name="deep_path", w=255, expr="^r"))
    short = critical_path([wire], "wire_path")
    long = critical_path([deep], "deep_path")
    assert 0 < short["ns"] < long["ns"] < 10
    assert "FDRE" in long["from"] and "FDRE.D" in long["to"]
    assert critical_path([deep], "deep_path") == long  # cached


def test_warning_above_sixty_percent_of_the_period():
    path = {"ns": 6.5, "from": "a", "to": "b"}
    t = timing_summary(path, 100.0)  # period 10 ns: 65 % > 60 %
    assert t["warning"] and "6.50 ns of the 10.00 ns period" in t["warning"]
    assert t["fmax_mhz_logic_only"] == pytest.approx(1000 / 6.5)
    assert timing_summary({**path, "ns": 5.9}, 100.0)["warning"] is None
    assert timing_summary({**path, "ns": 5.9}, 200.0)["warning"]  # 5 ns period


@pytest.mark.slow
def test_a_failing_estimate_is_one_line_and_remembered(tmp_path, monkeypatch):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad_top (input wire clk); this is not verilog\nendmodule\n")
    with pytest.raises(EehwError, match="Yosys sta on bad_top failed"):
        critical_path([bad], "bad_top")

    def no_yosys(*args, **kwargs):
        raise AssertionError("Yosys ran again on a netlist it already failed on")

    monkeypatch.setattr("eehw.hw.tools.run.subprocess.run", no_yosys)
    with pytest.raises(EehwError, match="Yosys sta on bad_top failed"):
        critical_path([bad], "bad_top")


@pytest.mark.slow
def test_where_abc9_fails_the_estimate_comes_from_the_abc_netlist_and_says_so(tmp_path, monkeypatch):
    """Yosys 0.23 aborts inside synth_xilinx -abc9 on some netlists (fmnist_cnn's early-exit top):
    sta then reads the plain ABC netlist, and the method names it and why."""
    import eehw.hw.tools.fmax as fmax

    deep = tmp_path / "deep.v"
    deep.write_text(CIRCUIT.format(name="deep_path", w=255, expr="^r"))
    abc9 = critical_path([deep], "deep_path")
    assert abc9["netlist"] == "abc9" and "abc9_error" not in abc9
    monkeypatch.setitem(fmax.STA_RECIPES, "abc9", fmax.STA_RECIPES["abc9"] + "; no_such_yosys_command")
    abc = critical_path([deep], "deep_path")
    assert abc["netlist"] == "abc" and abc["abc9_error"].startswith("Yosys sta on deep_path failed")
    assert 0 < abc["ns"] < 10 and "FDRE" in abc["from"]
    method = timing_summary(abc, 100.0)["method"]
    assert "(ABC) netlist" in method and "-abc9 failed: Yosys sta on deep_path failed" in method
    assert "-abc9 netlist" in timing_summary(abc9, 100.0)["method"]
