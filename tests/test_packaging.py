"""Board files, configs and templates ship inside the wheel, so an installed eehw finds them."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_installed_wheel_finds_shipped_data(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("eehw-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "eehw/boards/pynq-z2.yaml",
        "eehw/boards/zcu102.yaml",
        "eehw/configs/digits_mlp.yaml",
        "eehw/board.py",
        "eehw/cli.py",
        "eehw/rtl_sim/hdl/mvu.v",
        "eehw/rtl_sim/templates/ee_top.v.j2",
        "eehw/rtl_sim/harness/ee_top_tb.py",
        "eehw/rtl_sim/models/exit_gate.py",
    ):
        assert shipped in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import eehw.paths, eehw.board, eehw.config;"
        "print(eehw.paths.shipped('boards'));"
        "print(eehw.board.load_board('pynq-z2').part, eehw.config.load_config('digits_mlp').name)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    assert out[0].startswith(str(target))  # read from the installed copy, not the checkout
    assert out[1] == "xc7z020clg400-1 digits_mlp"
