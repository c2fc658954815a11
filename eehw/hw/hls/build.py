"""Per-block hls4ml projects: every backbone block and exit head becomes its own hls4ml project.

hls4ml 1.3.0 cannot split a branched ONNX graph (design.md section 2), so each block and head is
exported on its own: Brevitas -> QONNX (``export_qonnx``, ``dynamo=False``) -> qonnx cleanup,
channels-last, Gemm -> MatMul -> ``hls4ml.converters.convert_from_onnx_model``. Block boundaries
are channels-last end to end: a block's trailing transpose back to channels-first is dropped, so
the tensor it hands to the next block (and to its head) is the one the hardware streams.

Bit-exactness rests on the quantisation contract: every project's input precision is the exact
Brevitas type entering the block (never hls4ml's default ``fixed<16,6>``), and after conversion
every layer's precision is checked against the golden model (requantisers round half to even and
saturate, accumulators hold the full sum, nothing else narrows).

``compile()`` (g++, several seconds a block) is cached by content hash (QONNX bytes, hls4ml
config and version, backend, part, clock, settings, and the source of this module, of
eehw.hw.hls.decision, decision_layer and of ``hls_templates/nnet_utils``) under ``cache_dir()/hls4ml/<project>-<key>``.
hls4ml 1.3.0 cannot attach an existing library to a ModelGraph (``compile()`` always rewrites the
project with a new stamp and reruns g++), so a hit copies the compiled project, ``.so`` included,
into the design's folder and runs it through hls4ml's own C bridge (``<project>_double``, the
function ``ModelGraph.predict`` calls) without converting or compiling again. The copy works
because projects are written with ``write_weights_txt=False``: otherwise the C-sim reads
``weights/*.txt`` from the absolute path it was compiled in and exits when that is gone.
Cache misses compile in parallel (g++ subprocesses), one per core.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from torch import nn

from eehw.board import Board
from eehw.errors import EehwError, first_line
from eehw.hw.hls.convert import check_precisions, content_key, convert, hls_config, used_reuse_factors
from eehw.hw.hls.qonnx_export import channels_last_shape, export_block, head_graph
from eehw.hw.hls.settings import BACKENDS, BLOCK_META, FixedType, HlsBlock, HlsSettings
from eehw.model.golden import GoldenModel, IntBlock
from eehw.paths import cache_dir
from eehw.progress import progress

# --------------------------------------------------------------------------- build and cache


def _atomic_copytree(src: Path, dst: Path) -> None:
    """Replace ``dst`` by a copy of ``src`` so that ``dst`` is never half-written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    old = dst.with_name(f".{dst.name}.old{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=True)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


@dataclass
class _Job:
    """One project on its way through convert -> write -> compile -> cache -> design folder."""

    name: str
    block: IntBlock
    in_type: FixedType
    project_dir: Path
    project_name: str
    backend: str
    settings: HlsSettings
    key: str
    cached_dir: Path
    convert_seconds: float
    tmp: Path | None = None
    graph: object = None
    log: io.StringIO = field(default_factory=io.StringIO)
    compile_seconds: float = 0.0

    @property
    def cached(self) -> bool:
        return (self.cached_dir / BLOCK_META).is_file()

    def fail(self) -> None:
        """Keep hls4ml's output for the user, and nothing half-written."""
        self.cached_dir.parent.mkdir(parents=True, exist_ok=True)
        self.cached_dir.with_suffix(".log").write_text(self.log.getvalue())
        self.discard()

    def discard(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _prepare(
    name: str,
    model,
    block: IntBlock,
    in_type: FixedType,
    board: Board,
    project_dir: Path,
    backend: str,
    settings: HlsSettings | None,
) -> _Job:
    """Config and content key; on a cache miss also convert, check and write the project (to a tmp dir)."""
    if backend not in BACKENDS:
        raise EehwError(f"hls backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    settings = settings or HlsSettings()
    project_name = re.sub(r"\W", "_", name)
    start = time.perf_counter()
    config = hls_config(model, in_type, settings, backend)
    key = content_key(model, config, project_name, backend, board, settings)
    job = _Job(
        name,
        block,
        in_type,
        Path(project_dir),
        project_name,
        backend,
        settings,
        key,
        cache_dir() / "hls4ml" / f"{project_name}-{key}",
        0.0,
    )
    if not job.cached:
        job.tmp = job.cached_dir.with_name(f".{job.cached_dir.name}.tmp{os.getpid()}")
        shutil.rmtree(job.tmp, ignore_errors=True)
        try:
            job.graph = convert(model, config, job.tmp, project_name, backend, board, settings, block, job.log)
            check_precisions(job.graph, block, in_type)
            with contextlib.redirect_stdout(job.log):
                job.graph.write()
        except BaseException:
            job.fail()
            raise
    job.convert_seconds = time.perf_counter() - start
    return job


def _compile(job: _Job) -> None:
    """g++ through hls4ml's backend (thread-safe: a subprocess in the project's folder).

    The backend's compile builds the library without loading it: HlsBlock loads the copy in the
    design's folder, the same way for fresh and cached projects.
    """
    start = time.perf_counter()
    try:
        library = Path(job.graph.config.backend.compile(job.graph))
    except Exception as exc:
        raise EehwError(
            f"{job.name}: hls4ml C-sim compile (g++) failed: {first_line(exc)}; "
            f"see {job.cached_dir.with_suffix('.log')}"
        ) from None
    job.compile_seconds = time.perf_counter() - start
    meta = {
        "name": job.name,
        "project_name": job.project_name,
        "key": job.key,
        "backend": job.backend,
        "library": str(library.relative_to(job.tmp)),
        "convert_seconds": job.convert_seconds,
        "reuse_factors": used_reuse_factors(job.graph),
        "compile_seconds": job.compile_seconds,
    }
    (job.tmp / "eehw_convert.log").write_text(job.log.getvalue())
    (job.tmp / BLOCK_META).write_text(json.dumps(meta, indent=2))
    try:
        job.tmp.rename(job.cached_dir)
    except OSError:
        if not job.cached:
            raise
        shutil.rmtree(job.tmp)  # another process finished the same project first


def _finish(job: _Job, board: Board, was_cached: bool) -> HlsBlock:
    meta = json.loads((job.cached_dir / BLOCK_META).read_text())
    _atomic_copytree(job.cached_dir, job.project_dir)
    return HlsBlock(
        name=job.name,
        project_dir=job.project_dir,
        project_name=job.project_name,
        backend=job.backend,
        part=board.part,
        clock_period_ns=board.clock_period_ns,
        settings=job.settings,
        in_type=job.in_type,
        out_type=FixedType.of_output(job.block),
        in_shape=channels_last_shape(job.block.in_shape),
        out_shape=channels_last_shape(job.block.out_shape),
        key=job.key,
        library=meta["library"],
        cached=was_cached,
        convert_seconds=job.convert_seconds,
        compile_seconds=job.compile_seconds,
        reuse_factors=tuple(meta.get("reuse_factors", ())),
    )


def _run_jobs(jobs: list[_Job], board: Board, bar=None, task=None) -> list[HlsBlock]:
    """Compile the cache misses in parallel (g++ runs in subprocesses), then publish every project."""
    was_cached = [job.cached for job in jobs]
    todo = [job for job, hit in zip(jobs, was_cached) if not hit]
    workers = max(1, min(len(todo), os.cpu_count() or 1))
    errors: list[BaseException] = []
    if todo:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_compile, job): job for job in todo}
            for future in as_completed(futures):
                if future.exception() is not None:
                    futures[future].fail()
                    errors.append(future.exception())
                if bar is not None:
                    bar.update(task, advance=1)
    if errors:
        raise errors[0]
    if bar is not None and len(jobs) > len(todo):
        bar.update(task, advance=len(jobs) - len(todo))
    return [_finish(job, board, hit) for job, hit in zip(jobs, was_cached)]


def build_block(
    name: str,
    model,
    block: IntBlock,
    in_type: FixedType,
    board: Board,
    project_dir: Path,
    backend: str = "Vitis",
    settings: HlsSettings | None = None,
) -> HlsBlock:
    """Convert and compile one QONNX block into ``project_dir``, reusing a cached compiled project."""
    return _run_jobs([_prepare(name, model, block, in_type, board, project_dir, backend, settings)], board)[0]


def _parts(trained_model: nn.Module, golden: GoldenModel) -> list[tuple[nn.Module, IntBlock, FixedType]]:
    """(Brevitas module, golden block, input type) in execution order: block k, then its head."""
    parts = []
    in_type = FixedType.of_quant(golden.blocks[0].ops[0])  # the quantised input the hardware receives
    for k, block in enumerate(golden.blocks):
        parts.append((trained_model.blocks[k], block, in_type))
        in_type = FixedType.of_output(block)
        if k in golden.heads:
            parts.append((trained_model.heads[str(k)], golden.heads[k], in_type))
    return parts


def build_hls_projects(
    trained,
    golden: GoldenModel,
    board: Board,
    out_dir: str | Path,
    backend: str = "Vitis",
    settings: Mapping[str, HlsSettings] | None = None,
) -> list[HlsBlock]:
    """One compiled hls4ml project per block and head under ``<out_dir>/hls/<block name>/``.

    ``trained`` is a TrainedModel (or the Brevitas MultiExitNet itself); ``settings`` maps block
    names ("blocks.0", "heads.1", ...) to HlsSettings, missing names get the defaults.
    """
    model = getattr(trained, "model", trained)
    settings = dict(settings or {})
    parts = _parts(model, golden)
    unknown = set(settings) - {block.name for _, block, _ in parts}
    if unknown:
        raise EehwError(
            f"hls settings name unknown blocks {', '.join(sorted(unknown))}; "
            f"blocks are {', '.join(b.name for _, b, _ in parts)}"
        )
    root = Path(out_dir) / "hls"
    jobs = []
    with progress() as bar:
        task = bar.add_task("hls4ml convert", total=len(parts))
        try:
            for module, block, in_type in parts:
                bar.update(task, description=f"hls4ml convert {block.name}")
                start = time.perf_counter()
                qonnx = export_block(module, block)
                if block.name.startswith("heads."):
                    qonnx = head_graph(qonnx, block)
                export_seconds = time.perf_counter() - start
                job = _prepare(
                    block.name, qonnx, block, in_type, board, root / block.name, backend, settings.get(block.name)
                )
                job.convert_seconds += export_seconds
                jobs.append(job)
                bar.update(task, advance=1, description="hls4ml convert")
        except BaseException:
            for job in jobs:  # written but never compiled: not worth keeping
                job.discard()
            raise
        task = bar.add_task("hls4ml compile", total=len(jobs))
        return _run_jobs(jobs, board, bar, task)
