"""The C-sim chain: every block's hls4ml C simulation run in sequence, compared with the golden model."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from eehw.cache import atomic_write_text, code_hash, load_json
from eehw.errors import EehwError
from eehw.hw.hls.qonnx_export import to_channels_last
from eehw.hw.hls.settings import HlsBlock
from eehw.model.golden import GoldenModel
from eehw.paths import cache_dir


def _as_int(values: np.ndarray, exp: int, name: str) -> np.ndarray:
    scaled = values * 2.0**-exp
    ints = np.rint(scaled)
    if not np.array_equal(ints, scaled):
        bad = int(np.sum(ints != scaled))
        raise EehwError(
            f"{name}: C-sim output has {bad} values that are not multiples of 2^{exp}; "
            f"the project's output type does not match the golden model"
        )
    return ints.astype(np.int64)


def chain_outputs(projects: list[HlsBlock], golden: GoldenModel, x_float: np.ndarray) -> dict[str, np.ndarray]:
    """Every project's integer output (channels-last) with each block fed the previous block's C-sim
    output and each head fed its block's; block 0 gets the golden quantised input."""
    by_name = {p.name: p for p in projects}
    missing = [b.name for b in list(golden.blocks) + [golden.heads[k] for k in golden.exits] if b.name not in by_name]
    if missing:
        raise EehwError(f"hls chain: no project for {', '.join(missing)}; build every block and head first")
    q0 = golden.blocks[0].ops[0]
    h = to_channels_last(golden.quantize_input(x_float)).astype(np.float64) * 2.0**q0.out_exp
    outputs = {}
    for k, block in enumerate(golden.blocks):
        h = by_name[block.name].predict(h)
        outputs[block.name] = _as_int(h, block.out_exp, block.name)
        if k in golden.heads:
            head = golden.heads[k]
            outputs[head.name] = _as_int(by_name[head.name].predict(h), head.out_exp, head.name)
    return outputs


def run_chain(projects: list[HlsBlock], golden: GoldenModel, x_float: np.ndarray) -> list[np.ndarray]:
    """Per-exit integer logits of the hls4ml C-sim chain, shallowest exit first."""
    outputs = chain_outputs(projects, golden, x_float)
    return [outputs[golden.heads[k].name].reshape(len(x_float), -1) for k in golden.exits]


def chain_check(
    projects: list[HlsBlock], golden: GoldenModel, x_float: np.ndarray
) -> tuple[dict[str, int], dict | None]:
    """Per block and head, the number of samples whose chained C-sim output differs from the
    golden model's (0 everywhere or the HLS path is wrong), and the first such (block, sample).

    The result is cached by content: every project's key (its generated sources and settings),
    the samples, and the code of the C-sim bridge and the golden model. A warm flow of fmnist_cnn
    would otherwise run 10k samples through every C-sim library again (most of its HLS step)."""
    h = hashlib.sha256(code_hash("eehw.hw.hls.chain", "eehw.model.golden", "eehw.model.export").encode())
    for p in sorted(projects, key=lambda p: p.name):
        h.update(f"|{p.name}:{p.key}".encode())
    h.update(np.ascontiguousarray(x_float).tobytes())
    path = cache_dir() / "hls_chain" / f"{h.hexdigest()[:20]}.json"
    hit = load_json(path, "HLS chain check", "running it again", ("counts", "first"))
    if hit is not None:
        return {k: int(v) for k, v in hit["counts"].items()}, hit["first"]
    counts, first = _chain_check(projects, golden, x_float)
    atomic_write_text(path, json.dumps({"counts": counts, "first": first}))
    return counts, first


def _chain_check(
    projects: list[HlsBlock], golden: GoldenModel, x_float: np.ndarray
) -> tuple[dict[str, int], dict | None]:
    outputs = chain_outputs(projects, golden, x_float)
    n = len(x_float)
    counts, first, h = {}, None, x_float

    def compare(name: str, want: np.ndarray) -> None:
        nonlocal first
        bad = np.any(outputs[name].reshape(n, -1) != want.reshape(n, -1), 1)
        counts[name] = int(bad.sum())
        if bad.any() and first is None:
            first = {"block": name, "sample": int(np.argmax(bad))}

    for k, block in enumerate(golden.blocks):
        h = block(h)
        compare(block.name, to_channels_last(h))
        if k in golden.heads:
            compare(golden.heads[k].name, golden.heads[k](h))
    return counts, first
