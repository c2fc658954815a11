"""PYNQ driver of the generated multi-exit overlay (eehw.hw.hls.top): load the bitstream, set the
per-exit thresholds, run a batch through the AXI DMA, return classes and exit indices.

It reads the ``register_map.json`` written next to the block-design Tcl, so driver and hardware
share one register map and one word layout. ``pynq`` exists only on the board: it is imported
inside the methods that talk to the hardware, and everything else (input packing, result
unpacking, threshold encoding) is plain numpy, tested on the host.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eehw.errors import EehwError

MAX_BATCH = 1 << 16  # samples per DMA transfer: the tag field is 16 bits


@dataclass(frozen=True)
class RegisterMap:
    """The parts of register_map.json the driver uses."""

    design: str
    dma_base: int
    word_bits: int
    words_per_beat: int
    beats_per_sample: int
    elements_per_beat: int
    element_bits: int
    element_signed: bool
    fields: dict[str, tuple[int, int]]  # result word: name -> (bit offset, width)
    exit_registers: tuple[int, ...]  # address of each early exit's register, exit order
    batch_registers: tuple[int, ...]  # addresses that take the batch size
    threshold_bits: int
    enable_bit: int
    num_exits: int
    num_classes: int
    thresholds: tuple[int | None, ...] = ()  # the flow's chosen value per early exit (None: disabled)

    @classmethod
    def load(cls, path: Path) -> RegisterMap:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise EehwError(f"cannot read register map {path}: {exc}") from None
        try:
            inp, dec = raw["input"], raw["decision"]
            exits = sorted((r for r in raw["registers"] if r["what"] == "exit"), key=lambda r: r["exit"])
            if [r["exit"] for r in exits] != list(range(len(exits))):
                raise KeyError("registers (one per early exit)")
            return cls(
                design=raw["design"],
                dma_base=int(raw["dma"]["base"], 16),
                word_bits=int(inp["word_bits"]),
                words_per_beat=int(inp["words_per_beat"]),
                beats_per_sample=int(inp["beats_per_sample"]),
                elements_per_beat=int(inp["elements_per_beat"]),
                element_bits=int(inp["element_bits"]),
                element_signed=bool(inp["element_signed"]),
                fields={k: (int(v["offset"]), int(v["bits"])) for k, v in raw["output"]["fields"].items()},
                exit_registers=tuple(int(r["address"], 16) for r in exits),
                batch_registers=tuple(int(r["address"], 16) for r in raw["registers"] if r["what"] == "batch_size"),
                threshold_bits=int(dec["threshold_bits"]),
                enable_bit=int(exits[0]["enable_bit"]) if exits else 31,
                num_exits=len(raw["exits"]),
                num_classes=int(dec["num_classes"]),
                thresholds=tuple(None if r["threshold"] is None else int(r["threshold"]) for r in exits),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EehwError(f"register map {path} lacks or mangles {exc}; regenerate it with eehw.hw.hls.top") from None


# ---------------------------------------------------------------------------------------------
# Pure parts: what goes into and comes out of the DMA


def pack_inputs(x_int: np.ndarray, regmap: RegisterMap) -> np.ndarray:
    """Integer inputs (N, C) or channels-first (N, C, *spatial) -> the DMA's 32-bit words.

    The stream is channels-last: beat p carries the C channels of position p, element e at bits
    [e*B, (e+1)*B) of the beat (two's complement when signed), the beat split into 32-bit words
    least significant first. Shape (N * beats * words_per_beat,), uint32.
    """
    x = np.asarray(x_int)
    if not np.issubdtype(x.dtype, np.integer):
        raise EehwError(f"inputs must be the quantised integers (golden.quantize_input), got dtype {x.dtype}")
    n, e, beats, b = x.shape[0], regmap.elements_per_beat, regmap.beats_per_sample, regmap.element_bits
    if x.ndim < 2 or x.shape[1] != e or int(np.prod(x.shape[2:], dtype=np.int64)) != beats:
        raise EehwError(
            f"inputs of shape {x.shape} do not match the overlay's {beats} beat(s) of {e} "
            f"elements per sample; pass (N, {e}{', spatial...' if beats > 1 else ''})"
        )
    lo, hi = (-(1 << (b - 1)), (1 << (b - 1)) - 1) if regmap.element_signed else (0, (1 << b) - 1)
    if x.size and (x.min() < lo or x.max() > hi):
        raise EehwError(
            f"inputs outside the {'signed' if regmap.element_signed else 'unsigned'} {b}-bit range [{lo}, {hi}]"
        )
    beats_data = x.reshape(n, e, beats).transpose(0, 2, 1).astype(np.int64) & ((1 << b) - 1)  # (N, P, E)
    bits = (beats_data[..., None] >> np.arange(b)) & 1  # (N, P, E, B), LSB first
    bits = bits.reshape(n, beats, e * b)
    total = regmap.words_per_beat * regmap.word_bits
    if e * b > total:
        raise EehwError(f"{e} x {b}-bit elements do not fit {regmap.words_per_beat} input words per beat")
    bits = np.pad(bits, ((0, 0), (0, 0), (0, total - e * b)))
    words = bits.reshape(n, beats, regmap.words_per_beat, regmap.word_bits)
    weights = np.left_shift(np.uint64(1), np.arange(regmap.word_bits, dtype=np.uint64))
    return (words.astype(np.uint64) * weights).sum(axis=-1, dtype=np.uint64).astype(np.uint32).reshape(-1)


@dataclass(frozen=True)
class Results:
    """Per-sample results in input order."""

    classes: np.ndarray  # int64 (N,)
    exits: np.ndarray  # int64 (N,), 0 = first exit
    confidences: np.ndarray  # int64 (N,), the policy's score


def unpack_results(words: np.ndarray, regmap: RegisterMap, num_samples: int) -> Results:
    """Result words in arrival order -> results in input order, by tag; every tag exactly once."""
    words = np.asarray(words, dtype=np.uint64).reshape(-1)
    if words.size != num_samples:
        raise EehwError(f"got {words.size} results for {num_samples} samples")

    def field(name: str) -> np.ndarray:
        offset, width = regmap.fields[name]
        return ((words >> np.uint64(offset)) & np.uint64((1 << width) - 1)).astype(np.int64)

    tags = field("tag")
    if np.any(np.bincount(tags, minlength=num_samples) != 1) or tags.max(initial=-1) >= num_samples:
        raise EehwError(
            "the overlay returned lost or duplicated sample tags; reload the bitstream and "
            "check that the batch size register matches the batch"
        )
    order = np.argsort(tags, kind="stable")
    exits, classes = field("exit")[order], field("class")[order]
    if exits.size and (exits.max() >= regmap.num_exits or classes.max() >= regmap.num_classes):
        raise EehwError(
            "the overlay returned an exit or class index out of range; the register map does not match the bitstream"
        )
    return Results(classes=classes, exits=exits, confidences=field("confidence")[order])


def register_value(t: int | None, k: int, threshold_bits: int, enable_bit: int) -> int:
    """The word of early exit ``k``'s register: threshold in the low bits, enable on top.

    ``t`` is an integer policy threshold of eehw.policy.policies (margin: exit iff score >= t;
    max_softmax_pow2: exit iff S <= t, see ``pow2_threshold_from_tau``); ``None`` disables the
    exit (enable bit clear).
    """
    if t is None:
        return 0
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
        raise EehwError(f"threshold of exit {k} must be an integer register value or None, got {t!r}")
    if not 0 <= t < 1 << threshold_bits:
        raise EehwError(f"threshold {t} of exit {k} does not fit the {threshold_bits}-bit register")
    return int(t) | (1 << enable_bit)


def threshold_words(thresholds: Sequence[int | None], regmap: RegisterMap) -> list[tuple[int, int]]:
    """(address, register value) per early exit, one threshold per non-final exit."""
    if len(thresholds) != len(regmap.exit_registers):
        raise EehwError(
            f"got {len(thresholds)} thresholds for {len(regmap.exit_registers)} early exits; "
            "give one per non-final exit (None disables one)"
        )
    return [
        (address, register_value(t, k, regmap.threshold_bits, regmap.enable_bit))
        for k, (t, address) in enumerate(zip(thresholds, regmap.exit_registers))
    ]


# ---------------------------------------------------------------------------------------------
# The board


def _pynq():
    try:
        import pynq
    except ImportError:
        raise EehwError("the pynq package is not installed: run the driver on the board's PYNQ image") from None
    return pynq


class EarlyExitOverlay:
    """The multi-exit accelerator on a PYNQ board."""

    def __init__(
        self,
        bitfile: Path | str,
        register_map: Path | str | None = None,
        download: bool = True,
        thresholds: Sequence[int | None] | None = None,
    ) -> None:
        """``thresholds`` default to the register map's: the values the flow simulated (or the
        last ``eehw retune``); pass others to override them."""
        bitfile = Path(bitfile)
        self.regmap = RegisterMap.load(Path(register_map) if register_map else bitfile.with_name("register_map.json"))
        pynq = _pynq()
        self.overlay = pynq.Overlay(str(bitfile), download=download)
        self.dma = self.overlay.axi_dma_0
        self._mmio: dict[int, object] = {}
        self.set_thresholds(self.regmap.thresholds if thresholds is None else thresholds)

    def _write(self, address: int, value: int) -> None:
        base = address & ~0xFFFF  # every register sits in its IP's 64K segment
        if base not in self._mmio:
            self._mmio[base] = _pynq().MMIO(base, 0x10000)
        self._mmio[base].write(address - base, int(value))

    def set_thresholds(self, thresholds: Sequence[int | None]) -> None:
        for address, value in threshold_words(thresholds, self.regmap):
            self._write(address, value)

    def predict(self, x_int: np.ndarray) -> Results:
        """Classes, exit indices and confidences of every sample, in input order."""
        x_int = np.asarray(x_int)
        parts = [self._run(x_int[i : i + MAX_BATCH]) for i in range(0, len(x_int), MAX_BATCH)]
        if not parts:
            empty = np.zeros(0, np.int64)
            return Results(empty, empty, empty)
        return Results(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("classes", "exits", "confidences")))

    def _run(self, x_int: np.ndarray) -> Results:
        pynq = _pynq()
        n = len(x_int)
        words = pack_inputs(x_int, self.regmap)
        for address in self.regmap.batch_registers:
            self._write(address, n)
        inp = pynq.allocate(shape=words.shape, dtype=np.uint32)
        out = pynq.allocate(shape=(n,), dtype=np.uint64)
        try:
            inp[:] = words
            self.dma.recvchannel.transfer(out)
            self.dma.sendchannel.transfer(inp)
            self.dma.sendchannel.wait()
            self.dma.recvchannel.wait()
            return unpack_results(np.array(out), self.regmap, n)
        finally:
            inp.freebuffer()
            out.freebuffer()
