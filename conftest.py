"""`make test-fast` (EEHW_TEST_FAST=1, -m "not slow") promises no training and no synthesis: a
test that is not marked slow and reaches the training loop or a Yosys run fails, naming itself
and the fix, instead of silently making the fast suite slow."""

import atexit
import os
import shutil
import tempfile

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis writes nothing into the checkout (tests write only under temporary folders): no
# example database, and its constants cache in a temporary folder of its own, removed when the
# process ends (every pytest run, and every process that imports this file, makes one).
settings.register_profile("eehw", database=None)
settings.load_profile("eehw")
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="eehw-hypothesis-")
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)
set_hypothesis_home_dir(_HYPOTHESIS_HOME)


@pytest.fixture(autouse=True, scope="session")
def _isolated_dirs(tmp_path_factory):
    """Checkpoints, Verilator builds and designs of a test run (tests/ and rtl_sim/tests/) never
    touch the user's cache or build/: every run starts cold, as on a fresh machine."""
    root = tmp_path_factory.mktemp("eehw")
    os.environ["EEHW_CACHE_DIR"] = str(root / "cache")
    os.environ["EEHW_BUILD_DIR"] = str(root / "build")


def pytest_configure(config):
    if not os.environ.get("EEHW_TEST_FAST"):
        return
    import eehw.hw.tools.yosys
    import eehw.model.train

    def refuse(what):
        def guard(*args, **kwargs):
            pytest.fail(
                f"this test {what} but is not marked slow: mark it @pytest.mark.slow "
                "(make test-fast runs no training and no synthesis)",
                pytrace=False,
            )

        return guard

    eehw.model.train._fit = refuse("trains a model")
    eehw.hw.tools.yosys.run_script = refuse("runs Yosys")


@pytest.fixture(scope="session")
def decision_vectors(tmp_path_factory):
    """The decision unit's shared vector file (rtl_sim/models/decision_vectors.py), written once:
    the Verilog unit, the HLS header and the HLS top's decision IPs are all driven with it."""
    from eehw.rtl_sim.models.decision_vectors import write

    return write(tmp_path_factory.mktemp("vectors") / "decision_vectors.txt")
