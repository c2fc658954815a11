"""Board files, configs and templates ship inside the wheel, so an installed eehw finds them."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_installed_wheel_finds_shipped_data(tmp_path):
    # Built from a copy of the tracked files: setuptools writes build/ and *.egg-info beside the
    # sources it builds, and a test writes only under tmp_path.
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    src = tmp_path / "src"
    for name in tracked.splitlines():
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
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
            str(src),
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
        "eehw/rtl_sim/models/decision_vectors.py",
        "eehw/rtl_sim/hdl/ee_top.f",
        "eehw/rtl_sim/harness/eehw_runtime.v",
        "eehw/hls_templates/tb/decision_config.h.j2",
        "eehw/hw/rtl/design.py",
        "eehw/hw/hls/decision_layer.py",
        "eehw/hw/tools/run.py",
        "eehw/model/golden.py",
        "eehw/policy/policies.py",
        "eehw/deploy/pynq_driver.py",
        "eehw/dse/explore.py",
        "eehw/report/synth.py",
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
        "print(eehw.board.load_board('pynq-z2').part, eehw.config.load_config('digits_mlp').name);"
        "import eehw.hw.rtl.design as d; print(len(d.hdl_sources('ee_top')), d.hdl_sources('ee_top')[0].parent)"
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
    count, folder = out[2].split()
    assert int(count) == 11 and folder.startswith(str(target))  # the .f lists, read from the wheel
