"""Characterisation jobs on a Dask cluster give what the local process pool gives, and so does
the whole search."""

import numpy as np
import pytest

from eehw import dse, flow
from eehw.board import load_board
from eehw.characterise import characterise, fork_files, merge_files, synth_job
from eehw.executor import executor, run_jobs

distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed")



@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as c:
        yield c


def _jobs():
    return [("fork", ("eehw_char_top", fork_files(8), "xc7")), ("merge", ("eehw_char_top", merge_files(2, 12), "xc7"))]


def test_yosys_jobs_on_dask_equal_local_processes(cluster, tmp_path, monkeypatch):
    # Separate caches, so both executors really run Yosys.
    monkeypatch.setenv("EEHW_CACHE_DIR", str(tmp_path / "dask"))
    with executor(cluster) as pool:
        on_dask = run_jobs(pool, synth_job, _jobs())
    monkeypatch.setenv("EEHW_CACHE_DIR", str(tmp_path / "local"))
    with executor(workers=2) as pool:
        local = run_jobs(pool, synth_job, _jobs())
    assert on_dask == local
    assert local["merge"]["LUT"] > 0 and local["fork"]["FF"] >= 2 * 8  # real netlists, not empty ones


def test_an_unreachable_scheduler_is_a_one_line_error():
    from eehw.errors import EehwError

    with pytest.raises(EehwError, match="cannot reach the Dask scheduler"):
        with executor("tcp://127.0.0.1:9"):
            pass


@pytest.mark.slow
def test_search_on_dask_equals_the_local_run(cluster, tiny_dse_config):
    d = flow.run(tiny_dse_config, stop_after="evaluate")
    board = load_board("pynq-z2")
    logits = dse.cached_logits(d.cfg, d.data, d.golden)
    pols = dse.hardware_policies(d.cfg, logits, ("margin",))
    configs = dse.exit_configs(d.golden.exits, d.golden.logit_exps, logits, pols)
    results = []
    for scheduler in (cluster, None):  # Dask first: on a fresh cache it is the one that synthesises
        with executor(scheduler, workers=2) as pool:
            char = characterise(d.golden, board, pols, max_simd=2, max_pe=1, pool=pool)
        results.append((char, dse.search(char, configs, board, dse.Constraints(), "latency")))
    (c_dask, r_dask), (c_local, r_local) = results
    assert c_dask.glue == c_local.glue
    assert {u: [o.as_dict() for o in opts] for u, opts in c_dask.options.items()} == \
        {u: [o.as_dict() for o in opts] for u, opts in c_local.options.items()}
    for key in r_local.table:
        np.testing.assert_array_equal(r_dask.table[key], r_local.table[key])
    np.testing.assert_array_equal(r_dask.ranked, r_local.ranked)
    np.testing.assert_array_equal(r_dask.pareto, r_local.pareto)
