"""Board files: shipped values, lookup by name or path, strict validation, budget checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from eehw.board import Board, Resources, boards_dir, known_boards, load_board
from eehw.errors import EehwError

GOOD = {
    "name": "myboard",
    "description": "a test board",
    "part": "xc7z020clg400-1",
    "family": "xc7",
    "clock_mhz": 100,
    "budget": {"LUT": 53200, "FF": 106400, "BRAM18": 280, "DSP": 220},
    "shell": {"type": "zynq7", "axi_dma": True, "fclk_mhz": 100},
}


def write_board(tmp_path: Path, data: object, name: str = "myboard.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def variant(**changes: object) -> dict:
    """GOOD with top-level or dotted (``budget.LUT``) keys replaced; None removes the key."""
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, value in changes.items():
        *parents, leaf = key.split("__")
        node = data
        for p in parents:
            node = node[p]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return data


def one_line_error(path: Path) -> str:
    with pytest.raises(EehwError) as info:
        load_board(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_pynq_z2_matches_the_issue() -> None:
    board = load_board("pynq-z2")
    assert board.name == "pynq-z2"
    assert board.part == "xc7z020clg400-1"
    assert board.family == "xc7"
    assert board.clock_mhz == 100
    assert board.budget == Resources(LUT=53_200, FF=106_400, BRAM18=280, DSP=220)
    assert board.shell["type"] == "zynq7"
    assert board.shell["axi_dma"] is True
    assert board.description


def test_zcu102_loads() -> None:
    board = load_board("zcu102")
    assert board.part == "xczu9eg-ffvb1156-2-e"
    assert board.family == "xcup"
    assert board.budget == Resources(LUT=274_080, FF=548_160, BRAM18=1_824, DSP=2_520)
    assert board.shell["type"] == "zynq_us+"
    assert board.clock_mhz > 0


def test_known_boards_come_from_the_folder_and_match_their_names() -> None:
    names = known_boards()
    assert names == sorted(p.stem for p in boards_dir().glob("*.yaml"))
    assert {"pynq-z2", "zcu102"} <= set(names)
    for name in names:
        assert load_board(name).name == name


def test_unknown_board_lists_known_boards() -> None:
    with pytest.raises(EehwError) as info:
        load_board("pynq-z3")
    message = str(info.value)
    assert "\n" not in message
    assert "unknown board 'pynq-z3'" in message
    assert "known boards: " + ", ".join(known_boards()) in message


def test_board_loads_from_a_yaml_path(tmp_path: Path) -> None:
    board = load_board(str(write_board(tmp_path, GOOD)))
    assert isinstance(board, Board)
    assert board.name == "myboard"
    assert board.budget.LUT == 53_200
    yml = write_board(tmp_path, GOOD, "other.yml")
    assert load_board(yml).part == "xc7z020clg400-1"


def test_missing_board_file(tmp_path: Path) -> None:
    with pytest.raises(EehwError, match="does not exist"):
        load_board(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"part": None}, "missing key 'part'"),
        ({"budget__DSP": None}, "missing key 'budget.DSP'"),
        ({"budget__LUT": -5}, "key 'budget.LUT' must be a positive integer, got -5"),
        ({"budget__FF": 0}, "key 'budget.FF' must be a positive integer, got 0"),
        ({"budget__BRAM18": 1.5}, "key 'budget.BRAM18' must be a positive integer"),
        ({"budget__LUT": "53200"}, "key 'budget.LUT' must be a positive integer, got '53200'"),
        ({"budget__LUT": True}, "key 'budget.LUT' must be a positive integer"),
        ({"clock_mhz": "fast"}, "key 'clock_mhz' must be a positive number"),
        ({"clock_mhz": -100}, "key 'clock_mhz' must be a positive number"),
        ({"lut_budget": 5}, "unknown key 'lut_budget'"),
        ({"budget__URAM": 5}, "unknown key 'budget.URAM'"),
        ({"shell__dma": True}, "unknown key 'shell.dma'"),
        ({"shell__type": None}, "missing key 'shell.type'"),
        ({"shell__axi_dma": "yes"}, "key 'shell.axi_dma' must be true or false"),
        ({"family": "xc7z"}, "unknown Yosys synth_xilinx family 'xc7z'"),
        ({"budget": [1, 2]}, "key 'budget' must be a mapping"),
        ({"name": ""}, "key 'name' must be a non-empty string"),
    ],
)
def test_bad_board_file_is_one_line_naming_file_and_key(tmp_path: Path, changes: dict, expected: str) -> None:
    message = one_line_error(write_board(tmp_path, variant(**changes)))
    assert expected in message


def test_empty_and_malformed_yaml(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert "must hold a mapping" in one_line_error(empty)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\npart: x\n")
    assert "invalid YAML" in one_line_error(broken)


def test_budget_overrun_reports_resource_and_excess() -> None:
    budget = load_board("pynq-z2").budget
    used = Resources(LUT=54_434, FF=1_000, BRAM18=300, DSP=220)
    over = used.overruns(budget)
    assert [o.resource for o in over] == ["LUT", "BRAM18"]
    assert over[0].excess == 1_234
    assert str(over[0]) == "LUT over by 1,234 (54,434 / 53,200)"
    assert str(over[1]) == "BRAM18 over by 20 (300 / 280)"
    assert not used.fits(budget)
    # exactly at the budget fits: DSP 220 / 220 is not an overrun
    assert Resources(LUT=53_200, FF=106_400, BRAM18=280, DSP=220).fits(budget)


def test_resources_arithmetic_and_validation() -> None:
    a = Resources(LUT=10, FF=20, BRAM18=1, DSP=2)
    assert a + a == Resources(LUT=20, FF=40, BRAM18=2, DSP=4)
    assert a.as_dict() == {"LUT": 10, "FF": 20, "BRAM18": 1, "DSP": 2}
    assert a.utilisation(Resources(LUT=20, FF=40, BRAM18=2, DSP=4))["LUT"] == 0.5
    with pytest.raises(ValueError):
        Resources(LUT=-1, FF=0, BRAM18=0, DSP=0)
