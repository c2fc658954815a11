"""Estimated clock rate of a design: Yosys ``sta`` on its ``synth_xilinx -abc9`` netlist with
the delays of Yosys's own Xilinx 7-series cell models (``cells_sim.v`` specify blocks).

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
STA_RECIPE = (
    "hierarchy -check -top {top}; setattr -unset rom_style; "
    "synth_xilinx -family {family} -top {top} -flatten -noiopad -abc9; "
    "read_verilog -lib -specify +/xilinx/cells_sim.v"
)

_ARRIVAL = re.compile(r"Latest arrival time in '[^']*' is (\d+):")
_STEP = re.compile(r"^\s*(\d+) (\S+) \((\S+)\)")


def critical_path(sources: list[Path], top: str, family: str = "xc7") -> dict:
    """{"ns", "from", "to"}: the latest arrival time in ``top`` and the cells it runs between,
    cached by the content of the sources (and their memory files)."""
    from eehw.hw.tools.yosys import _tmp_root, run_key, run_script

    recipe = STA_RECIPE.format(top=top, family=family)
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
                raise EehwError(f"{exc}; the timing estimate is not available for this design") from None
            text = log.read_text() if log.exists() else ""
            error = None
            if done.returncode != 0 or not _ARRIVAL.search(text):
                error = f"Yosys sta on {top} failed: {failure_reason(done)}"
            hit = {"report": text, "error": error}
        atomic_write_text(cached, json.dumps(hit))
    if hit["error"]:  # the same netlist makes the same Yosys fail: no need to wait for it again
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
        "method": "Yosys sta, synth_xilinx -abc9 netlist, Xilinx cells_sim.v delays, no routing",
        "warning": warning,
    }
