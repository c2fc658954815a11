"""Target boards: part, Yosys family, clock, resource budget and shell, read from YAML files.

Boards are data, not code (like hls4ml's ``supported_boards.json``): adding a board means
dropping a ``<name>.yaml`` next to ``pynq-z2.yaml``, or passing the path of one, never
editing Python. Every file is checked strictly so a typo is refused with one line naming the
file and the key instead of silently becoming a wrong budget.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from eehw.errors import EehwError
from eehw.paths import shipped
from eehw.yamlfile import YamlReader, read_yaml

#: Values accepted by Yosys ``synth_xilinx -family``; checked so a typo fails here, not in Yosys.
YOSYS_FAMILIES = (
    "xcup",
    "xcu",
    "xc7",
    "xc6s",
    "xc6v",
    "xc5v",
    "xc4v",
    "xc3sda",
    "xc3sa",
    "xc3se",
    "xc3s",
    "xc2vp",
    "xc2v",
)

_BOARD_KEYS = ("name", "part", "family", "clock_mhz", "budget", "shell", "description")
_SHELL_REQUIRED = ("type",)
_SHELL_OPTIONAL = ("axi_dma", "fclk_mhz", "board_part")


def boards_dir() -> Path:
    """Folder of the shipped board files (the repository's boards/, installed as eehw.boards)."""
    return shipped("boards")


@dataclass(frozen=True)
class Overrun:
    """One resource a design needs more of than the board has."""

    resource: str
    used: int
    available: int

    @property
    def excess(self) -> int:
        return self.used - self.available

    def __str__(self) -> str:
        return f"{self.resource} over by {self.excess:,} ({self.used:,} / {self.available:,})"


@dataclass(frozen=True)
class Resources:
    """FPGA resource counts, used both for a board's budget and for a design's estimate."""

    LUT: int
    FF: int
    BRAM18: int
    DSP: int

    def __post_init__(self) -> None:
        # Estimators often compute with numpy; store plain ints so results hash, compare and
        # serialise the same way whatever produced them.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"Resources.{f.name} must be a non-negative integer, got {value!r}")
            object.__setattr__(self, f.name, int(value))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Resource names in report order."""
        return tuple(f.name for f in fields(cls))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.names()}

    def __add__(self, other: Resources) -> Resources:
        if not isinstance(other, Resources):
            return NotImplemented
        return Resources(**{n: getattr(self, n) + getattr(other, n) for n in self.names()})

    def overruns(self, budget: Resources) -> list[Overrun]:
        """Resources of ``self`` that exceed ``budget``, in report order; empty when it fits."""
        return [
            Overrun(n, getattr(self, n), getattr(budget, n))
            for n in self.names()
            if getattr(self, n) > getattr(budget, n)
        ]

    def fits(self, budget: Resources) -> bool:
        return not self.overruns(budget)

    def utilisation(self, budget: Resources) -> dict[str, float]:
        """Fraction of each budgeted resource used (may exceed 1.0)."""
        return {n: getattr(self, n) / getattr(budget, n) if getattr(budget, n) else float("inf") for n in self.names()}


@dataclass(frozen=True)
class Board:
    """A target board as read from its YAML file."""

    name: str
    part: str  # Vivado/Vitis part number
    family: str  # Yosys synth_xilinx -family
    clock_mhz: float  # target clock of the generated accelerator
    budget: Resources  # whole-device resources
    shell: dict[str, Any] = field(hash=False)  # how the host talks to the accelerator
    description: str = ""
    source: Path = field(default=Path("."), compare=False)  # file it was read from

    @property
    def clock_period_ns(self) -> float:
        return 1000.0 / self.clock_mhz


def known_boards() -> list[str]:
    """Names of the shipped boards, sorted."""
    return sorted(p.stem for p in boards_dir().glob("*.yaml"))


def resolve_board_path(name_or_path: str | Path) -> Path:
    """A ``.yaml``/``.yml`` path as given, or the shipped file of a board name."""
    text = str(name_or_path)
    if Path(text).suffix in (".yaml", ".yml"):
        path = Path(text)
        if not path.is_file():
            raise EehwError(
                f"board file {path} does not exist; check the path or use one of: {', '.join(known_boards())}"
            )
        return path
    path = boards_dir() / f"{text}.yaml"
    if not text or "/" in text or "\\" in text or not path.is_file():
        raise EehwError(
            f"unknown board {text!r}; known boards: {', '.join(known_boards())} "
            f"(or give the path of a .yaml board file)"
        )
    return path


def load_board(name_or_path: str | Path) -> Board:
    """Load and validate a board by shipped name (``pynq-z2``) or by path to a YAML file."""
    path = resolve_board_path(name_or_path)
    return parse_board(read_yaml(path, "board file"), path)


def parse_board(raw: Any, source: Path) -> Board:
    """Validate the parsed YAML of a board file; every problem is one line naming file and key."""
    check = YamlReader(source, "board file", example=boards_dir() / "pynq-z2.yaml")
    top = check.mapping(raw, "", required=_BOARD_KEYS, optional=())
    budget = check.mapping(top["budget"], "budget", required=Resources.names(), optional=())
    shell = check.mapping(top["shell"], "shell", required=_SHELL_REQUIRED, optional=_SHELL_OPTIONAL)
    family = check.string(top["family"], "family")
    if family not in YOSYS_FAMILIES:
        check.fail("family", f"unknown Yosys synth_xilinx family {family!r}; valid: {', '.join(YOSYS_FAMILIES)}")
    check.string(shell["type"], "shell.type")
    if "axi_dma" in shell and not isinstance(shell["axi_dma"], bool):
        check.fail("shell.axi_dma", f"must be true or false, got {shell['axi_dma']!r}")
    if "board_part" in shell:
        check.string(shell["board_part"], "shell.board_part")
    if "fclk_mhz" in shell:
        check.positive_number(shell["fclk_mhz"], "shell.fclk_mhz")
    return Board(
        name=check.string(top["name"], "name"),
        part=check.string(top["part"], "part"),
        family=family,
        clock_mhz=check.positive_number(top["clock_mhz"], "clock_mhz"),
        budget=Resources(**{k: check.positive_int(budget[k], f"budget.{k}") for k in Resources.names()}),
        shell=dict(shell),
        description=check.string(top["description"], "description"),
        source=source,
    )
