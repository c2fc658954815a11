"""Characterisation jobs on a Dask cluster give what the local process pool gives, and so does
the whole search."""

import numpy as np
import pytest

from eehw import flow
from eehw.board import load_board
from eehw.dse.characterise import characterise, fork_files, merge_files, synth_job
from eehw.dse.executor import executor, run_jobs
from eehw.dse.exits import exit_configs, hardware_policies
from eehw.dse.explore import run
from eehw.dse.search import Constraints, search
from eehw.policy.logits import cached_logits

distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as c:
        yield c


def _jobs():
    return [("fork", ("eehw_char_top", fork_files(8), "xc7")), ("merge", ("eehw_char_top", merge_files(2, 12), "xc7"))]


@pytest.mark.slow
def test_yosys_jobs_on_dask_equal_local_processes(cluster, tmp_path, monkeypatch):
    # Separate caches, so both executors really run Yosys.
    monkeypatch.setenv("EEHW_CACHE_DIR", str(tmp_path / "dask"))
    with executor(cluster) as pool:
        on_dask = run_jobs(pool, synth_job, _jobs())
    monkeypatch.setenv("EEHW_CACHE_DIR", str(tmp_path / "local"))
    with executor(workers=2) as pool:
        local = run_jobs(pool, synth_job, _jobs())
    assert on_dask == local
    # real netlists, not empty ones: the fork keeps its beats (8 + 16 tag + 1 bits) in LUTRAM
    assert local["merge"]["LUT"] > 0 and local["fork"]["LUTRAM"] >= 8


def test_an_unreachable_scheduler_is_a_one_line_error(monkeypatch):
    from eehw.dse import executor as executor_module
    from eehw.errors import EehwError

    monkeypatch.setattr(executor_module, "CONNECT_TIMEOUT", "1s")  # nothing listens on port 9
    with pytest.raises(EehwError, match="cannot reach the Dask scheduler"):
        with executor("tcp://127.0.0.1:9"):
            pass


@pytest.mark.slow
def test_search_on_dask_equals_the_local_run(cluster, tiny_dse_config):
    d = flow.run(tiny_dse_config, stop_after="evaluate")
    board = load_board("pynq-z2")
    logits = cached_logits(d.cfg, d.data, d.golden)
    pols = hardware_policies(d.cfg, logits, ("margin",))
    configs = exit_configs(d.golden.exits, d.golden.logit_exps, logits, pols)
    results = []
    for scheduler in (cluster, None):  # Dask first: on a fresh cache it is the one that synthesises
        with executor(scheduler, workers=2) as pool:
            char = characterise(d.golden, board, pols, max_simd=2, max_pe=1, pool=pool)
        results.append((char, search(char, configs, board, Constraints(), "latency")))
    (c_dask, r_dask), (c_local, r_local) = results
    assert c_dask.glue == c_local.glue
    assert {u: [o.as_dict() for o in opts] for u, opts in c_dask.options.items()} == {
        u: [o.as_dict() for o in opts] for u, opts in c_local.options.items()
    }
    for key in r_local.table:
        np.testing.assert_array_equal(r_dask.table[key], r_local.table[key])
    np.testing.assert_array_equal(r_dask.ranked, r_local.ranked)
    np.testing.assert_array_equal(r_dask.pareto, r_local.pareto)


@pytest.mark.slow
def test_validation_on_process_workers_needs_no_shared_folder(tiny_dse_config, tmp_path, monkeypatch):
    """Workers in processes of their own, each in its own working directory with its own cache
    and build folders: the validated designs' files still land in the client's build folder."""
    import os
    import shutil

    from eehw.paths import build_dir, cache_dir

    monkeypatch.setenv("EEHW_BUILD_DIR", str(tmp_path / "client"))  # a build folder only this test writes
    worker = tmp_path / "worker"
    env = {"EEHW_CACHE_DIR": str(worker / "cache"), "EEHW_BUILD_DIR": str(worker / "build")}
    # The worker's cache starts with a copy of the session's characterisations (the search on Dask
    # above made them) and of Verilator's compiled runtime (its objects and precompiled header,
    # built once per machine): it then builds, simulates and synthesises only the validated
    # designs, which is what this test is about, and none of those is in its cache.
    (worker / "cache" / "verilator").mkdir(parents=True)
    if (cache_dir() / "characterise").is_dir():
        shutil.copytree(cache_dir() / "characterise", worker / "cache" / "characterise")
    for shared in (cache_dir() / "verilator").glob("runtime-*"):
        shutil.copytree(shared, worker / "cache" / "verilator" / shared.name)
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            local_directory=str(worker / "dask"),
            env=env,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        (worker / "cwd").mkdir(parents=True)
        client.run(os.chdir, str(worker / "cwd"))
        assert set(client.run(os.getcwd).values()) == {str(worker / "cwd")}
        report = run(
            tiny_dse_config,
            "pynq-z2",
            policies=("margin",),
            scheduler=cluster,
            validate=1,
            validate_ratio_designs=False,
        )
    for kind in ("sim", "yosys"):  # the worker simulated and synthesised the designs itself
        assert any((worker / "cache" / kind).glob("*")), kind
    client_designs = (build_dir() / "pynq-z2" / "tiny_dse" / "dse" / "designs").resolve()
    assert len(report["validated"]) >= 2  # the chosen design and the baseline
    for des in report["validated"]:
        rtl_dir = os.path.realpath(des["measured"]["rtl_dir"])
        assert rtl_dir.startswith(str(client_designs)), rtl_dir
        top = open(os.path.join(rtl_dir, des["measured"]["top"] + ".v")).read()
        sources = [f for f in os.listdir(rtl_dir) if f.endswith(".v")]
        texts = "".join(open(os.path.join(rtl_dir, f)).read() for f in sources)
        assert top and ".mem" in texts and "eehw-validate-" not in texts  # memories named where they are now
        for mem in (p for p in texts.split('"') if p.endswith(".mem")):
            assert os.path.isfile(mem) and os.path.realpath(mem).startswith(str(client_designs))
        flist = open(os.path.join(rtl_dir, des["measured"]["top"] + ".f")).read().split()
        assert flist and all(os.path.isfile(f) for f in flist), flist  # the file list names files that are here
    # The worker wrote nothing into the client's folders, and nothing outside its own but caches.
    assert not list((worker / "build").glob("**/designs")) if (worker / "build").exists() else True
    assert (worker / "cache" / "yosys").is_dir()  # it did the synthesis, in its own cache
