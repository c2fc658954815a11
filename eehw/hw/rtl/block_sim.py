"""One block in Verilator under the per-cycle cocotb harness (rtl_sim/harness/block_tb.py).

The harness takes any module with the project's AXI-Stream block interface (clk, rst,
s_tdata/s_tvalid/s_tready/s_tuser, m_tdata/m_tvalid/m_tready/m_tuser, optional s_tlast/m_tlast
and sticky error; a sample is one or more beats, element 0 in the low bits), so our generated blocks and the
Verilog Vitis HLS writes per block run through the same checks, as FINN does with its rtlsim.
Random input gaps and output stalls exercise the handshakes; after them a back-to-back burst
without stalls measures the initiation interval. Builds are cached by a hash of the sources,
the memory files they name, the parameters and the build options.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eehw.errors import EehwError
from eehw.hw.bits import TagQueue, unpack
from eehw.hw.rtl.verilate import MAKE_OPTIONS, run_harness, verilate
from eehw.paths import cache_dir

BUILD_ARGS = ("-O2", "-Wno-fatal")
BURST = 16  # samples of the back-to-back burst that measures the initiation interval
TAIL = 64  # cycles watched after the last sample, for trailing duplicate beats
_DATA_FILE = re.compile(r'"([^"\n]+\.(?:mem|hex|dat|bin|txt))"')


@dataclass(frozen=True)
class BlockResult:
    """What came out of one block, per input sample in input order."""

    outputs: np.ndarray  # (samples, out_beats * out_elems) int64, decoded from the output beats
    latency: np.ndarray  # last output beat's handshake cycle - first input beat's, -1 if missing
    in_cycle: np.ndarray
    out_cycle: np.ndarray
    ii: float  # mean cycles between output beats in the steady state of the back-to-back burst
    ii_intervals: np.ndarray  # every interval between consecutive burst outputs
    burst_outputs: np.ndarray  # (burst, out_elems): the burst repeats the first samples
    duplicates: int  # output beats whose tag matched no outstanding sample
    missing: int  # samples that never came out (burst samples not counted: ii is then nan)
    reordered: int  # output beats that came before an earlier sample's
    bad_last: int  # output beats whose tlast is not 1 exactly on each sample's last beat
    error_flag: bool
    stalled: bool  # the run stopped after idle_limit cycles without a handshake (a lost sample)
    cycles: int
    wall_seconds: float

    @property
    def samples(self) -> int:
        return len(self.outputs)

    @property
    def stream_ok(self) -> bool:
        return (
            self.duplicates == 0
            and self.missing == 0
            and self.reordered == 0
            and self.bad_last == 0
            and not self.stalled
        )


def design_block_sources(rtl, module: str) -> list[Path]:
    """The sources one generated block needs: the RTL library and the block's own file (not
    the top or the other blocks, so the build hash changes only with this block)."""
    own = [p for p in rtl.sources if p.parent.resolve() == rtl.out_dir.resolve()]
    block = next((p for p in own if p.stem == module), None)
    if block is None:
        raise EehwError(
            f"no generated block '{module}' in {rtl.out_dir}; blocks: "
            f"{', '.join(p.stem for p in own if p.stem != rtl.top)}"
        )
    return [p for p in rtl.sources if p not in own] + [block]


def _data_files(sources: list[Path]) -> list[Path]:
    """Memory files the sources name in quotes ($readmemh etc.), absolute or beside the source."""
    found = []
    for src in sources:
        for name in _DATA_FILE.findall(src.read_text(errors="replace")):
            for path in (Path(name), src.parent / name):
                if path.is_file():
                    found.append(path)
                    break
    return found


def build_block(sources: list[Path], toplevel: str, params: dict | None = None) -> Path:
    """Compile ``toplevel`` from ``sources`` with ``params`` overriding its Verilog parameters,
    once per content hash."""
    sources = [Path(s) for s in sources]
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise EehwError(f"block source not found: {missing[0]}")
    args = list(BUILD_ARGS)
    for key, value in sorted((params or {}).items()):
        if not re.fullmatch(r"[A-Za-z_]\w*", str(key)) or not isinstance(value, (int, str)) or isinstance(value, bool):
            raise EehwError(f"parameter {key}={value!r} of {toplevel}: use an identifier and an int or str value")
        args.append(f"-G{key}={value}" if isinstance(value, int) else f'-G{key}="{value}"')
    h = hashlib.sha256("\0".join([toplevel, *args, *MAKE_OPTIONS]).encode())
    for path in [*sources, *_data_files(sources)]:
        h.update(str(path.name).encode())
        h.update(path.read_bytes())
    return verilate(sources, toplevel, cache_dir() / "verilator" / f"{toplevel}-blk-{h.hexdigest()[:16]}", args)


def _fits(values: np.ndarray, bits: int) -> bool:
    return values.size == 0 or (values.min() >= -(1 << (bits - 1)) and values.max() < (1 << bits))


def simulate_block(
    sources: list[Path],
    toplevel: str,
    x_int: np.ndarray,
    in_elem_bits: int,
    out_elems: int,
    out_elem_bits: int,
    out_signed: bool,
    *,
    params: dict | None = None,
    gap_p: float = 0.0,
    stall_p: float = 0.0,
    seed: int = 0,
    idle_limit: int = 20_000,
    in_beats: int = 1,
    out_beats: int = 1,
) -> BlockResult:
    """Run the samples ``x_int`` (one row per sample, already in beat order: channels-last for
    feature maps) through the block ``toplevel``, each as ``in_beats`` beats (a row split evenly,
    ``out_elems`` elements in each of ``out_beats`` output beats); each cycle the input is held back with
    probability ``gap_p`` and the output stalled with probability ``stall_p``. Then up to 16
    of the samples again back to back without stalls, to measure the initiation interval.
    A block that loses a sample is stopped after ``idle_limit`` cycles without a handshake
    (raise it for blocks slower than that per sample) and reported ``stalled``."""
    rows = np.asarray(x_int)
    if rows.ndim == 0 or len(rows) == 0:
        raise EehwError(f"{toplevel}: no samples to simulate")
    if not np.issubdtype(rows.dtype, np.integer):
        raise EehwError(f"{toplevel}: inputs must be integers (got {rows.dtype}); quantise them first")
    rows = rows.astype(np.int64).reshape(len(rows), -1)
    if in_elem_bits < 1 or out_elem_bits < 1 or out_elems < 1:
        raise EehwError(f"{toplevel}: element widths and output count must be positive")
    if not _fits(rows, in_elem_bits):
        raise EehwError(f"{toplevel}: input values {rows.min()}..{rows.max()} do not fit {in_elem_bits}-bit elements")
    for name, p in (("gap_p", gap_p), ("stall_p", stall_p)):
        if not 0.0 <= p < 1.0:
            raise EehwError(f"{name}={p} is not a probability below 1 (1 would never hand a sample over)")
    if in_beats < 1 or out_beats < 1 or rows.shape[1] % in_beats:
        raise EehwError(f"{toplevel}: {rows.shape[1]} elements per sample do not split into {in_beats} beats")
    n = len(rows)
    beat_rows = rows.reshape(n * in_beats, -1)
    mask = (1 << in_elem_bits) - 1
    words = [sum((int(v) & mask) << (i * in_elem_bits) for i, v in enumerate(row)) for row in beat_rows.tolist()]
    burst = min(BURST, n)
    build_dir = build_block(sources, toplevel, params)

    with tempfile.TemporaryDirectory(prefix="eehw-blk-") as tmp:
        tmp = Path(tmp)
        out_file = tmp / "out.json"
        cfg = {
            "words": [f"{w:x}" for w in words],
            "burst": burst,
            "seed": int(seed),
            "gap_p": gap_p,
            "stall_p": stall_p,
            "in_bits": beat_rows.shape[1] * in_elem_bits,
            "out_bits": out_elems * out_elem_bits,
            "beats": in_beats,
            "out_beats": out_beats,
            "idle_limit": int(idle_limit),
            "tail": TAIL,
            "output": str(out_file),
        }
        wall = run_harness(f"block {toplevel}", toplevel, "block_tb", build_dir, tmp, cfg, out_file)
        raw = json.loads(out_file.read_text())
    if raw["mismatch"]:
        raise EehwError(f"{toplevel}: {raw['mismatch']}; check the element counts and widths")
    if raw["protocol"]:
        raise EehwError(f"{toplevel} broke the AXI-Stream interface: {raw['protocol']}")
    return _decode(raw, n, burst, out_elems, out_beats, out_elem_bits, out_signed, wall)


def _decode(
    raw: dict, n: int, burst: int, out_elems: int, out_beats: int, bits: int, signed: bool, wall: float
) -> BlockResult:
    """Each output beat to its sample by tag (tags count up modulo 2^TAG_W, so the next output
    beat with tag t belongs to the earliest sample with tag t that still expects beats)."""
    total = n + burst
    tags = TagQueue(total, raw["widths"]["m_tuser"])
    outputs = np.zeros((total, out_beats * out_elems), dtype=np.int64)
    got = np.zeros(total, dtype=np.int64)  # beats received per sample
    out_cycle = np.full(total, -1, dtype=np.int64)
    duplicates = reordered = bad_last = 0
    last = -1
    for cycle, tag, data, tlast in raw["out"]:
        i = tags.peek(tag)
        if i is None:
            duplicates += 1
            continue
        reordered += i < last  # a later sample's beat already came out
        last = max(last, i)
        j = got[i]
        outputs[i, j * out_elems : (j + 1) * out_elems] = unpack(int(data, 16), out_elems, bits, signed)
        got[i] += 1
        bad_last += int(tlast) != int(got[i] == out_beats)
        if got[i] == out_beats:
            tags.pop(tag)
            out_cycle[i] = cycle
    in_cycle = np.full(total, -1, dtype=np.int64)
    in_cycle[: len(raw["in_cycle"])] = raw["in_cycle"][:total]
    latency = np.where((out_cycle >= 0) & (in_cycle >= 0), out_cycle - in_cycle, -1)
    burst_cycles = out_cycle[n:]
    intervals = np.diff(burst_cycles) if (burst_cycles >= 0).all() else np.zeros(0, dtype=np.int64)
    steady = intervals[len(intervals) // 2 :]  # the second half: the pipeline has filled
    ii = float(steady.mean()) if len(steady) else float("nan")
    return BlockResult(
        outputs[:n],
        latency[:n],
        in_cycle[:n],
        out_cycle[:n],
        ii,
        intervals,
        outputs[n:],
        duplicates,
        int((out_cycle[:n] < 0).sum()),
        int(reordered),
        bad_last,
        bool(raw["error"]),
        bool(raw["timeout"]),
        int(raw["cycles"]),
        wall,
    )
