"""The multi-exit top on the HLS path: a Vivado block design that chains the hls4ml block IPs.

hls4ml's ``VivadoAccelerator`` wraps single-output models only, so the early-exit top is ours. Per
design this writes, under ``<out_dir>``:

- ``top/eehw_top_ips.cpp`` and one Vitis HLS script per small IP (``top/<ip>_hls.tcl``): the input
  adapter (DMA words -> first block, one tag per sample), a fork after each early-exit block, the
  decision units (``nnet_eehw_decision.h``), the conditional buffers (features go on only for
  samples that did not exit) and the exit merge (one AXI-Stream of {tag, exit, class, confidence});
- ``vivado/eehw_bd.tcl``: PS7 with the board preset, AXI DMA, every IP, the stream wiring, the
  AXI-Lite map, implementation to a bitstream and the utilization/timing reports
  (the pynq-z2 conventions of hls4ml's VivadoAccelerator: PS7, AXI DMA on HP0, FCLK0 100 MHz);
- ``vivado/register_map.json``: the addresses and word layouts the PYNQ driver uses.

The input is ``TopDesign``, a light description the flow builds from the golden model
(``TopDesign.from_golden``). The block and head IPs must be hls4ml ``io_stream`` projects: their
AXI-Stream ports are found by mode in the Tcl (hls4ml names them after layers). A beat of
``Stream(elements, bits)`` is assumed packed element 0 at bit 0 at the element width (Vitis HLS's
bit-compact aggregate), padded to whole bytes; ``Stream.beat_bits`` is the one place to change
if a Vitis release pads elements differently.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from eehw.board import Board
from eehw.deploy.pynq_driver import register_value
from eehw.errors import EehwError
from eehw.hw.block_design import (
    ENABLE_BIT,
    INPUT_WORD_BITS,
    REGISTER_OFFSET,
    RESULT_FIELDS,
    check_shell,
    write_block_design,
)
from eehw.hw.hls.decision import HEADER, DecisionUnit, header_path, jinja_env
from eehw.hw.plan import TAG_W, DecisionFormat
from eehw.model.golden import exit_indices
from eehw.policy.policies import PolicyName, PolicyParams

MIN_FIFO_DEPTH = 64
TAG_FIFO_DEPTH = 512


def ip_name(block_name: str) -> str:
    """The hls4ml project (and IP) name of a golden block, as eehw.hw.hls.build names its projects."""
    return re.sub(r"\W", "_", block_name)


@dataclass(frozen=True)
class Stream:
    """What crosses one AXI-Stream per sample: ``beats`` beats of ``elements`` x ``bits`` bits."""

    elements: int
    bits: int
    beats: int = 1

    @property
    def beat_bits(self) -> int:
        """TDATA width: the packed elements, padded to whole bytes as Vitis HLS pads AXI-Stream."""
        return 8 * math.ceil(self.elements * self.bits / 8)


@dataclass(frozen=True)
class TopDesign:
    """A design as the top needs it: block and head names in order, where the kept exits are,
    the stream shapes between blocks and the decision format.

    ``blocks[i]`` is the IP of backbone block i (``outputs[i]`` its output stream); ``exits`` are
    the block indices with a kept exit head, shallowest first, the final exit last;
    ``heads[k]`` the head IP of ``exits[k]``; ``shifts[k]`` its max_softmax_pow2 shift.
    Names are the golden ``IntBlock`` names, which are the hls4ml project (IP) names.
    """

    name: str
    blocks: tuple[str, ...]
    outputs: tuple[Stream, ...]
    input: Stream
    input_signed: bool
    exits: tuple[int, ...]
    heads: tuple[str, ...]
    fmt: DecisionFormat
    shifts: tuple[int, ...] = field(default=())
    tag_w: int = TAG_W
    # Register value of each early exit's threshold (None: exit disabled) that the register map
    # carries and the driver writes by default: the thresholds the flow simulated.
    thresholds: tuple[int | None, ...] = field(default=())

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.name):
            raise EehwError(f"design name {self.name!r} must be a Tcl/C identifier (letters, digits, _)")
        if not self.exits:
            raise EehwError("a design needs at least one exit")
        if list(self.exits) != sorted(set(self.exits)) or self.exits[0] < 0:
            raise EehwError(f"exit positions must be increasing block indices, got {list(self.exits)}")
        if self.exits[-1] >= len(self.blocks):
            raise EehwError(f"exit after block {self.exits[-1]} but the design has {len(self.blocks)} blocks")
        if len(self.heads) != len(self.exits):
            raise EehwError(f"{len(self.exits)} exits need {len(self.exits)} head names, got {len(self.heads)}")
        if len(self.outputs) != len(self.blocks):
            raise EehwError(
                f"{len(self.blocks)} blocks need {len(self.blocks)} output streams, got {len(self.outputs)}"
            )
        shifts = self.shifts or (0,) * len(self.exits)
        if len(shifts) != len(self.exits):
            raise EehwError(f"{len(self.exits)} exits need {len(self.exits)} shifts, got {len(shifts)}")
        object.__setattr__(self, "shifts", tuple(int(s) for s in shifts))
        thresholds = self.thresholds or (None,) * (len(self.exits) - 1)
        if len(thresholds) != len(self.exits) - 1:
            raise EehwError(
                f"{len(self.exits) - 1} early exits need {len(self.exits) - 1} thresholds, got {len(thresholds)}"
            )
        for k, t in enumerate(thresholds):
            register_value(t, k, self.fmt.thr_w, ENABLE_BIT)  # refuses a value the register cannot hold
        object.__setattr__(self, "thresholds", tuple(None if t is None else int(t) for t in thresholds))
        names = list(self.blocks) + list(self.heads)
        for ip in names:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", ip):
                raise EehwError(f"block name {ip!r} is not a valid IP name; use letters, digits and _")
        if len(set(names)) != len(names):
            raise EehwError(f"block and head names must be unique, got {names}")
        self.units  # noqa: B018 - refuses a policy without a hardware decision unit
        if self.fmt.conf_w > RESULT_FIELDS["confidence"][1]:
            raise EehwError(
                f"confidence of {self.fmt.conf_w} bits does not fit the 32-bit result field; "
                "use narrower logits or fewer frac_bits"
            )
        if self.fmt.thr_w > ENABLE_BIT:
            raise EehwError(f"a {self.fmt.thr_w}-bit threshold does not fit below the enable bit ({ENABLE_BIT})")
        if self.fmt.num_classes > 256 or len(self.exits) > 256:
            raise EehwError("the result word holds at most 256 classes and 256 exits")

    @property
    def units(self) -> list[DecisionUnit]:
        return [DecisionUnit(self.fmt, s) for s in self.shifts]

    @property
    def chain(self) -> tuple[str, ...]:
        """The backbone blocks the hardware needs: up to the final exit."""
        return self.blocks[: self.exits[-1] + 1]

    @property
    def input_words_per_beat(self) -> int:
        return math.ceil(self.input.beat_bits / INPUT_WORD_BITS)

    @classmethod
    def from_golden(
        cls, name: str, golden, exits, params: PolicyParams, fmt: DecisionFormat, thresholds=()
    ) -> TopDesign:
        """Describe the kept ``exits`` (block indices) of a golden model; shapes are channels-last
        streams: a (C, H, W) map is H*W beats of C elements, a flat vector one beat.
        ``thresholds``: the register value of each early exit (None disables it)."""
        exits = tuple(int(e) for e in exits)
        missing = [e for e in exits if e not in golden.heads]
        if missing:
            raise EehwError(f"no exit head after block(s) {missing}; the model has exits at {golden.exits}")
        wrong = [golden.heads[e].name for e in exits if golden.heads[e].out_bits != fmt.logit_w]
        if wrong:
            raise EehwError(
                f"exit head(s) {', '.join(wrong)} do not output {fmt.logit_w}-bit logits; "
                "build the DecisionFormat from the heads' output width"
            )
        quant = golden.blocks[0].ops[0]

        def stream(shape, bits) -> Stream:
            if len(shape) == 1:
                return Stream(int(shape[0]), int(bits))
            return Stream(int(shape[0]), int(bits), int(math.prod(shape[1:])))

        return cls(
            name=name,
            blocks=tuple(ip_name(b.name) for b in golden.blocks),
            outputs=tuple(stream(b.out_shape, b.out_bits) for b in golden.blocks),
            input=stream(golden.blocks[0].in_shape, quant.bits),
            input_signed=bool(quant.signed),
            exits=exits,
            heads=tuple(ip_name(golden.heads[e].name) for e in exits),
            fmt=fmt,
            shifts=tuple(params.shift(k) for k in exit_indices(golden.exits, exits)),
            thresholds=tuple(thresholds),
        )


@dataclass(frozen=True)
class TopFiles:
    """Where the generated top lives."""

    tcl: Path
    register_map: Path
    ip_source: Path
    ip_scripts: tuple[Path, ...]
    ips: tuple[str, ...]  # top-function names of the small IPs, one Vitis HLS run each


def _cell(ip: str) -> str:
    return f"{ip}_0"


def write_hls_top(design: TopDesign, board: Board, out_dir: Path, jobs: int = 2) -> TopFiles:
    """Write the top's IP sources, their HLS scripts, the block-design Tcl and the register map."""
    check_shell(board)
    fclk = board.shell.get("fclk_mhz", board.clock_mhz)
    out_dir = Path(out_dir)
    top_dir, viv_dir = out_dir / "top", out_dir / "vivado"
    top_dir.mkdir(parents=True, exist_ok=True)
    viv_dir.mkdir(parents=True, exist_ok=True)

    k_final = len(design.exits) - 1
    forks, decisions, buffers = [], [], []
    for k, (position, head, unit) in enumerate(zip(design.exits, design.heads, design.units)):
        final = k == k_final
        out = design.outputs[position]
        if not final:
            forks.append(
                {
                    "top": f"eehw_fork{k}",
                    "block": design.blocks[position],
                    "head": head,
                    "exit": k,
                    "bits": out.beat_bits,
                }
            )
            buffers.append(
                {
                    "top": f"eehw_buffer{k}",
                    "exit": k,
                    "block": design.blocks[position],
                    "next": design.blocks[position + 1],
                    "bits": out.beat_bits,
                    "beats": out.beats,
                }
            )
        fmt = unit.fmt
        decisions.append(
            {
                "top": f"eehw_decision{k}",
                "exit": k,
                "head": head,
                "final": final,
                "policy": f"{PolicyName(fmt.policy).value}, shift {unit.shift}",
                "config": unit.config_cpp(f"eehw_decision{k}_config"),
                "config_name": f"eehw_decision{k}_config",
                "n_classes": fmt.num_classes,
                "logit_w": fmt.logit_w,
                "class_w": fmt.class_w,
                "conf_w": fmt.conf_w,
                "thr_w": fmt.thr_w,
                "always_exit": fmt.always_exit,
                "logits_bits": Stream(fmt.num_classes, fmt.logit_w).beat_bits,
            }
        )
    env = jinja_env()
    source = env.get_template("top/eehw_top_ips.cpp.j2").render(
        d={
            "name": design.name,
            "tag_w": design.tag_w,
            "input_beat_bits": design.input.beat_bits,
            "input_words_per_beat": design.input_words_per_beat,
            "input_beats": design.input.beats,
        },
        forks=forks,
        decisions=decisions,
        buffers=buffers,
    )
    ip_source = top_dir / "eehw_top_ips.cpp"
    ip_source.write_text(source)
    (top_dir / HEADER).write_bytes(header_path().read_bytes())

    ips = (
        ["eehw_input"]
        + [f["top"] for f in forks]
        + [u["top"] for u in decisions]
        + [b["top"] for b in buffers]
        + ["eehw_merge"]
    )
    scripts = []
    for ip in ips:
        script = top_dir / f"{ip}_hls.tcl"
        script.write_text(
            env.get_template("top/ip_hls.tcl.j2").render(
                ip=ip, part=board.part, period=round(1000.0 / fclk, 3), source=ip_source.name
            )
        )
        scripts.append(script)

    cells, fifos, links, registers, clocked = _wiring(design, forks, decisions, buffers)
    tcl, register_map = write_block_design(
        viv_dir, design, board, cells, fifos, links, registers, clocked, ip_repos=(".. hls", ".. top"), jobs=jobs
    )
    return TopFiles(tcl, register_map, ip_source, tuple(scripts), tuple(ips))


def _fifo_depth(beats: int) -> int:
    """Room for a few samples' features while the head decides, as a power of two (AXIS FIFO)."""
    return max(MIN_FIFO_DEPTH, 1 << (4 * beats - 1).bit_length())


def _wiring(design: TopDesign, forks, decisions, buffers):
    """Cells, FIFOs, stream links (src, src_port, dst, dst_port; '' = the cell's only AXIS pin),
    AXI-Lite registers and clock pins of the block design."""
    hls = lambda ip: f"xilinx.com:hls:{ip}:1.0"  # noqa: E731 - Vitis HLS export_design default VLNV
    cells = [{"name": "eehw_input", "vlnv": hls("eehw_input")}]
    cells += [{"name": _cell(b), "vlnv": hls(b)} for b in design.chain]
    cells += [{"name": _cell(h), "vlnv": hls(h)} for h in design.heads]
    cells += [{"name": f["top"], "vlnv": hls(f["top"])} for f in forks]
    cells += [{"name": u["top"], "vlnv": hls(u["top"])} for u in decisions]
    cells += [{"name": b["top"], "vlnv": hls(b["top"])} for b in buffers]
    cells.append({"name": "eehw_merge", "vlnv": hls("eehw_merge")})

    fifos, links = [], []

    def link(src, src_port, dst, dst_port):
        links.append({"src": src, "src_port": src_port, "dst": dst, "dst_port": dst_port})

    def via_fifo(name, depth, src, src_port, dst, dst_port):
        fifos.append({"name": name, "depth": depth})
        link(src, src_port, name, "S_AXIS")
        link(name, "M_AXIS", dst, dst_port)

    link("axi_dma_0", "M_AXIS_MM2S", "eehw_input", "s_dma")
    link("eehw_input", "m_features", _cell(design.blocks[0]), "")
    tag_source = ("eehw_input", "m_tags")
    k_final = len(design.exits) - 1
    for k, position in enumerate(design.exits):
        block, head, dec = _cell(design.blocks[position]), _cell(design.heads[k]), f"eehw_decision{k}"
        start = design.exits[k - 1] + 1 if k else 0
        for i in range(start, position):  # blocks without an exit between two exits
            link(_cell(design.blocks[i]), "", _cell(design.blocks[i + 1]), "")
        if k == k_final:
            link(block, "", head, "")
        else:
            fork, buf = f"eehw_fork{k}", f"eehw_buffer{k}"
            link(block, "", fork, "s_in")
            link(fork, "m_head", head, "")
            beats = design.outputs[position].beats
            via_fifo(f"eehw_fifo_features{k}", _fifo_depth(beats), fork, "m_keep", buf, "s_features")
            link(dec, "m_verdict", buf, "s_verdict")
            link(buf, "m_features", _cell(design.blocks[position + 1]), "")
        link(head, "", dec, "s_logits")
        via_fifo(f"eehw_fifo_tags{k}", TAG_FIFO_DEPTH, *tag_source, dec, "s_tags")
        link(dec, "m_result", "eehw_merge", f"s_exit{k}")
        if k != k_final:
            tag_source = (f"eehw_buffer{k}", "m_tags")
    link("eehw_merge", "m_out", "axi_dma_0", "S_AXIS_S2MM")

    registers = [{"cell": "eehw_input", "offset": REGISTER_OFFSET, "what": "batch_size"}]
    registers += [
        {"cell": f"eehw_decision{k}", "offset": REGISTER_OFFSET, "what": "exit", "exit": k} for k in range(k_final)
    ]
    registers.append({"cell": "eehw_merge", "offset": REGISTER_OFFSET, "what": "batch_size"})
    clocked = [{"pin": f"{c['name']}/ap_clk"} for c in cells]
    clocked += [{"pin": f"{f['name']}/s_axis_aclk"} for f in fifos]
    return cells, fifos, links, registers, clocked
