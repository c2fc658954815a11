"""Estimated clock rate of a design: Yosys ``sta`` on its ``synth_xilinx -abc9`` netlist with
the delays of Yosys's own Xilinx 7-series cell models (``cells_sim.v`` specify blocks), or on
the plain ABC netlist where ``-abc9`` fails (the estimate says which).

No placement, no routing: the figure is the logic-only critical path, an optimistic bound on
the period Vivado would reach. Nets typically add as much again on a 7-series part, so a
logic-only path above LOGIC_SHARE_WARNING of the board's period is reported as at risk.
Vivado, when installed, gives the real figure (eehw.hw.tools.vendor). A separate Yosys run from the
resource count (eehw.hw.tools.yosys): ABC9 maps a little differently, and the counts stay comparable
with the DSE's characterisation.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from eehw.cache import atomic_write_text, load_json
from eehw.errors import EehwError
from eehw.hw.tools.run import failure_reason
from eehw.paths import cache_dir

LOGIC_SHARE_WARNING = 0.6  # of the clock period, for the logic-only path
STA_TIMEOUT_S = 3600  # Yosys sta can loop on some netlists (YosysHQ/yosys#4648)
_SYNTH = (
    "hierarchy -check -top {top}; setattr -unset rom_style; synth_xilinx -family {family} -top {top} -flatten -noiopad"
)
_CELL_DELAYS = "read_verilog -lib -specify +/xilinx/cells_sim.v"
#: The netlists sta reads, in the order tried: ABC9's, then plain ABC's where ABC9 fails (Yosys
#: 0.23 aborts inside synth_xilinx -abc9 on fmnist_cnn's early-exit top, std::out_of_range in
#: ABC9_OPS; the ABC netlist of it gives 13.00 ns on the same DSP48E1 cascade as its baseline's).
STA_RECIPES = {
    "abc9": f"{_SYNTH} -abc9; {_CELL_DELAYS}",
    "abc": f"{_SYNTH}; {_CELL_DELAYS}",
}


class _StaTimeout(EehwError):
    """Yosys sta ran past STA_TIMEOUT_S: another netlist is not tried (it would take as long)."""


_ARRIVAL = re.compile(r"Latest arrival time in '[^']*' is (\d+):")
_STEP = re.compile(r"^\s*(\d+) (\S+) \((\S+)\)")


def critical_path(sources: list[Path], top: str, family: str = "xc7") -> dict:
    """{"ns", "from", "to", "netlist"}: the latest arrival time in ``top``, the cells it runs
    between and the netlist sta read (``STA_RECIPES``; ``abc9_error`` says why not ABC9's)."""
    errors: list[str] = []
    for netlist, recipe in STA_RECIPES.items():
        try:
            path = _sta(sources, top, family, recipe.format(top=top, family=family))
        except _StaTimeout:
            raise
        except EehwError as exc:
            errors.append(str(exc) if not errors else f"{netlist} netlist: {exc}")
            continue
        return {**path, "netlist": netlist, **({"abc9_error": errors[0]} if errors else {})}
    raise EehwError("; ".join(errors))


def _sta(sources: list[Path], top: str, family: str, recipe: str) -> dict:
    """Yosys sta after ``recipe``, cached by the content of the sources (and their memory files)
    and the recipe; a failure is cached too (the same netlist makes the same Yosys fail)."""
    from eehw.hw.tools.yosys import _tmp_root, run_key, run_script

    cached = cache_dir() / "yosys" / f"{top}-sta-{run_key(sources, top, family, recipe)}.json"
    hit = load_json(cached, "timing estimate", "running Yosys sta again", ["report", "error"])
    if hit is None:  # the sta report is cached, not its reading below: editing that costs no Yosys run
        with tempfile.TemporaryDirectory(prefix="eehw-sta-", dir=_tmp_root()) as tmp:
            log = Path(tmp) / "sta.txt"
            try:
                done = run_script(
                    sources,
                    top,
                    f"{recipe}; tee -q -o {log} sta",
                    f"Yosys sta on {top}",
                    STA_TIMEOUT_S,
                    Path(tmp),
                    check=False,
                )
            except EehwError as exc:  # over STA_TIMEOUT_S
                raise _StaTimeout(f"{exc}; the timing estimate is not available for this design") from None
            text = log.read_text() if log.exists() else ""
            error = None
            if done.returncode != 0 or not _ARRIVAL.search(text):
                error = f"Yosys sta on {top} failed: {failure_reason(done)}"
            hit = {"report": text, "error": error}
        atomic_write_text(cached, json.dumps(hit))
    if hit["error"]:
        raise EehwError(hit["error"])
    return read_sta(hit["report"], top)


def read_sta(text: str, top: str) -> dict:
    """The latest arrival time of a Yosys ``sta`` report and the cells its path runs between."""
    match = _ARRIVAL.search(text)
    steps = [
        m.groups()
        for line in text[match.end() :].split("\n\n")[0].splitlines()
        if (m := _STEP.match(line)) and not m.group(3).startswith("BUFG")
    ]  # the path after the clock buffer
    return {
        "ns": int(match.group(1)) / 1000.0,
        "to": f"{steps[0][1]} ({steps[0][2]})" if steps else top,
        "from": f"{steps[-1][1]} ({steps[-1][2]})" if steps else top,
    }


def timing_summary(path: dict, clock_mhz: float) -> dict:
    """The estimate next to the board clock, with a warning when logic alone takes more than
    LOGIC_SHARE_WARNING of the period."""
    period = 1000.0 / clock_mhz
    share = path["ns"] / period
    warning = None
    if share > LOGIC_SHARE_WARNING:
        warning = (
            f"logic alone takes {path['ns']:.2f} ns of the {period:.2f} ns period at {clock_mhz:g} MHz "
            f"({share:.0%}, above {LOGIC_SHARE_WARNING:.0%}): with routing it will likely miss the clock"
        )
    return {
        "critical_path_ns": path["ns"],
        "fmax_mhz_logic_only": 1000.0 / path["ns"] if path["ns"] else None,
        "clock_mhz": clock_mhz,
        "share_of_period": share,
        "from": path["from"],
        "to": path["to"],
        "method": (
            "Yosys sta, synth_xilinx -abc9 netlist, Xilinx cells_sim.v delays, no routing"
            if path.get("netlist", "abc9") == "abc9"
            else f"Yosys sta, synth_xilinx (ABC) netlist, Xilinx cells_sim.v delays, no routing; "
            f"-abc9 failed: {path.get('abc9_error')}"
        ),
        "warning": warning,
    }
