"""Block characterisation: every backbone block and exit head at every folding option, and the
glue of the early-exit top (decision unit, conditional buffer, fork, merge), synthesised once
with Yosys and cached by content hash. The DSE composes designs from these figures.

Folding options (stated, and kept small on purpose): a block's option is a *lane level*
L in {1, 2, 4, ..., max_simd * max_pe}; each matrix-vector layer of the block takes the
(SIMD, PE) pair with the most lanes SIMD*PE <= L that divides its IN/OUT within max_simd /
max_pe (ties: the wider SIMD). Levels that give a block the same foldings are one option, and
a level that does not lower the block's cycles per sample (its sliding window or its input
stream already sets the pace) is none.

Cycles are the generator's formulas (``HwBlock.ii``, ``rtl.block_timing``,
``DecisionFormat.latency``, fork/gate/merge latencies), checked against simulation of whole
designs in the DSE validation step. Resources are Yosys ``synth_xilinx`` cell counts of each
module out of context.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from eehw.board import Board
from eehw.cache import atomic_write_text, load_json
from eehw.dse.executor import run_jobs
from eehw.dse.unit_files import (
    CHAR_TOP,
    JOB_DIR,
    block_files,
    decision_files,
    fork_files,
    gate_files,
    merge_files,
    queue_files,
)
from eehw.errors import EehwError
from eehw.hw.plan import DecisionFormat, plan_design
from eehw.hw.rtl.design import generate
from eehw.hw.stages import Folding, HwBlock, MvuStage
from eehw.hw.timing import (
    FORK_LATENCY,
    Timing,
    block_timing,
    buffer_depth,
    chain,
    pow2_depth,
    queue_depth,
    segment_timings,
    streaming,
)
from eehw.model.golden import GoldenModel
from eehw.paths import cache_dir
from eehw.policy.policies import PolicyName, PolicyParams
from eehw.progress import progress

CACHE_VERSION = 1
RESOURCE_KEYS = ("LUT", "FF", "DSP", "BRAM18")


def lane_levels(max_simd: int, max_pe: int) -> list[int]:
    """Powers of two and three times them (1, 2, 3, 4, 6, 8, 12, ...) up to the widest folding:
    a block reached by a fraction p of the samples can be folded about 1/p deeper, and with
    powers of two alone a p of 0.3 gets a fold of 2 instead of 3 (up to half its LUTs wasted)."""
    top = max_simd * max_pe
    levels = sorted({m << k for m in (1, 3) for k in range(top.bit_length()) if (m << k) < top})
    return levels + [top]


def layer_folding(n_in: int, n_out: int, lanes: int, max_simd: int, max_pe: int) -> Folding:
    """The (SIMD, PE) pair with the most lanes <= ``lanes`` (ties: wider SIMD)."""
    best = (0, 0, Folding(1, 1))
    for simd in (d for d in range(1, min(n_in, max_simd) + 1) if n_in % d == 0):
        for pe in (d for d in range(1, min(n_out, max_pe) + 1) if n_out % d == 0):
            if simd * pe <= lanes and (simd * pe, simd) > best[:2]:
                best = (simd * pe, simd, Folding(simd, pe))
    return best[2]


@dataclass
class UnitOption:
    """One block or head at one folding: its cycles and out-of-context resources."""

    unit: str
    lanes: int
    folding: dict[str, tuple[int, int]]  # layer name -> (SIMD, PE)
    ii: int
    timing: Timing  # first input beat -> last output beat of one sample (eehw.hw.timing)
    resources: dict[str, int]
    hw: HwBlock | None = field(default=None, repr=False, compare=False)

    @property
    def latency(self) -> int:
        return self.timing.latency

    @property
    def drain(self) -> int:
        return self.timing.drain

    def as_dict(self) -> dict:
        return {
            "unit": self.unit,
            "lanes": self.lanes,
            "folding": {k: list(v) for k, v in self.folding.items()},
            "ii": self.ii,
            "latency": self.latency,
            "resources": self.resources,
        }


def segment(options: list[UnitOption], fork_beats: int) -> list[Timing]:
    """The Timings of directly connected blocks and the exit head after them (the head's with
    its fork, ``fork_beats`` > 0) at these options: eehw.hw.timing.segment_timings on their
    stages. Options known only by their figures keep their own timings (the head's after the fork)."""
    if all(getattr(o.hw, "stages", None) for o in options):
        blocks, head = segment_timings([o.hw for o in options[:-1]], options[-1].hw, fork_beats)
        return [*blocks, head]
    fork = [streaming(FORK_LATENCY, fork_beats)] if fork_beats else []
    return [o.timing for o in options[:-1]] + [chain([*fork, options[-1].timing])]


@dataclass
class Characterisation:
    """Options per unit (``blocks.k`` / the head names), glue figures by key, and how long it took."""

    blocks: list[str]
    heads: dict[int, str]  # exit position -> unit name of the config's own head
    options: dict[str, list[UnitOption]]
    glue: dict[str, dict[str, int]]
    policies: dict[str, PolicyParams]
    formats: dict[str, DecisionFormat]
    synthesised: int = 0  # Yosys runs this time (the rest came from the cache)
    cached: int = 0
    seconds: float = 0.0
    alt_heads: dict[int, dict[str, str]] = field(default_factory=dict)  # exit -> head type -> unit name
    own_types: dict[int, str] = field(default_factory=dict)  # exit -> the config's head type

    def head_unit(self, position: int, head: str | None = None) -> str:
        """Unit name of the head of type ``head`` at an exit (None: the config's own)."""
        if head is None or head == self.own_types.get(position):
            return self.heads[position]
        return self.alt_heads[position][head]

    def head_type(self, position: int, head: str | None = None) -> str:
        """The head's type name (the unit name where the config's types are not known)."""
        return head or self.own_types.get(position) or self.heads[position]

    def decision_key(self, policy: str, shift: int, final: bool, serial: bool) -> str:
        return decision_key(self.formats[policy], policy, shift, final, serial)

    @staticmethod
    def gate_key(feat_w: int, dec_w: int, depth: int) -> str:
        return f"gate:{feat_w}:{dec_w}:{pow2_depth(depth)}"

    @staticmethod
    def queue_key(width: int, depth: int) -> str:
        return f"queue:{width}:{pow2_depth(depth)}"

    @staticmethod
    def fork_key(width: int) -> str:
        return f"fork:{width}"

    @staticmethod
    def merge_key(k: int, dec_w: int) -> str:
        return f"merge:{k}:{dec_w}"


def decision_key(fmt: DecisionFormat, policy: str, shift: int, final: bool, serial: bool) -> str:
    return (
        f"decision:{policy}:{fmt.num_classes}:{fmt.logit_w}:{shift}:{fmt.frac_bits}:{fmt.thr_w}:"
        f"{'final' if final else 'early'}:{'serial' if serial else 'pipeline'}"
    )


# ---------------------------------------------------------------------------------------------
# Jobs (run in worker processes or on Dask workers: everything they need is in the arguments)


def synth_job(top: str, files: dict[str, str], family: str) -> dict:
    """Write ``files`` into a fresh folder and synthesise ``top``; the figures as a dict."""
    from eehw.hw.tools.yosys import synthesize

    root = cache_dir() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eehw-char-", dir=root) as tmp:
        paths = []
        for name, text in files.items():
            path = Path(tmp) / name
            path.write_text(text.replace(JOB_DIR, tmp))
            if name.endswith(".v"):
                paths.append(path)
        # a block or head as a unit; the glue under its char top flattened, so tied ports fold
        return synthesize(paths, top, family, unit=_is_unit(top)).as_dict()


def _is_unit(top: str) -> bool:
    """A block or head synthesised as a unit (hierarchy kept); a glue module's char top whole."""
    return top != CHAR_TOP


def _job_key(top: str, files: dict[str, str], family: str) -> str:
    """The Verilog it synthesises (generated and library modules), the Yosys recipe and the
    version of the cell counting that turns a run into figures (eehw.hw.tools.yosys)."""
    from eehw.hw.tools.yosys import COUNT_VERSION, SYNTH_RECIPE, UNIT_RECIPE

    recipe = UNIT_RECIPE if _is_unit(top) else SYNTH_RECIPE
    h = hashlib.sha256(f"{CACHE_VERSION}|{recipe}|{COUNT_VERSION}|{top}|{family}".encode())
    for name in sorted(files):
        h.update(name.encode())
        h.update(files[name].encode())
    return h.hexdigest()[:24]


def _cache_path(key: str) -> Path:
    return cache_dir() / "characterise" / f"{key}.json"


# ---------------------------------------------------------------------------------------------


def characterise(
    golden: GoldenModel,
    board: Board,
    policies: dict[str, PolicyParams],
    *,
    max_simd: int,
    max_pe: int,
    pool,
    levels: list[int] | None = None,
    alternatives: dict[str, tuple[GoldenModel, list[int]]] | None = None,
    own_types: dict[int, str] | None = None,
    extra_shifts: dict[str, set[int]] | None = None,
) -> Characterisation:
    """Characterise every unit of ``golden`` at every lane level, the alternative heads
    (head type -> (the variant's golden model, the exits it serves)), and the glue every
    composed design can need, through ``pool`` (a concurrent.futures executor); cached by
    content hash. ``extra_shifts`` are the alternative heads' decision-unit shifts."""
    import time

    start = time.perf_counter()
    if not policies:
        raise EehwError("no hardware exit policy to characterise: use margin or max_softmax_pow2")
    levels = levels or lane_levels(max_simd, max_pe)
    base = plan_design(golden, "char", None, {}, max_simd, max_pe)
    blocks = [b.name for b in base.blocks]
    heads = {k: base.heads[k].name for k in base.exits}
    # Sources of units: the config's own model (blocks and heads), then each variant's heads.
    sources = [("", golden, base, set(blocks) | set(heads.values()), None)]
    alt_heads: dict[int, dict[str, str]] = {}
    for head, (vgolden, positions) in (alternatives or {}).items():
        vbase = plan_design(vgolden, "char", None, {}, max_simd, max_pe)
        names = {vbase.heads[p].name: f"{vbase.heads[p].name}:{head}" for p in positions}
        for p in positions:
            alt_heads.setdefault(p, {})[head] = names[vbase.heads[p].name]
        sources.append((head, vgolden, vbase, set(names), names))
    options: dict[str, list[UnitOption]] = {name: [] for name in blocks + list(heads.values())}
    for *_, names in sources[1:]:
        options.update({unit: [] for unit in names.values()})
    jobs: dict[str, tuple] = {}  # cache key -> synth_job arguments
    wanted: list[tuple[UnitOption, str]] = []
    margin = PolicyParams(PolicyName.MARGIN)
    with tempfile.TemporaryDirectory(prefix="eehw-char-rtl-", dir=_tmp_root()) as tmp:
        for tag, src, src_base, keep, rename in sources:
            layers = [
                (s.name, s.in_n, s.out_n)
                for b in list(src_base.blocks) + list(src_base.heads.values())
                for s in b.stages
                if isinstance(s, MvuStage)
            ]
            for lanes in levels:
                foldings = {name: layer_folding(n_in, n_out, lanes, max_simd, max_pe) for name, n_in, n_out in layers}
                plan = plan_design(src, f"char{lanes}", None, foldings, max_simd, max_pe)
                out_dir = Path(tmp) / f"{tag or 'own'}-l{lanes}"
                generate(plan, margin, out_dir, src.exits)
                for hw in list(plan.blocks) + [plan.heads[k] for k in plan.exits]:
                    if hw.name not in keep:
                        continue
                    unit = rename[hw.name] if rename else hw.name
                    fold = {s.name: (s.folding.simd, s.folding.pe) for s in hw.stages if isinstance(s, MvuStage)}
                    if any(o.folding == fold for o in options[unit]):
                        continue
                    # More lanes that no longer shorten the unit's cycles per sample (its sliding
                    # window or input already sets the pace) only cost LUTs: not an option.
                    if options[unit] and hw.ii >= options[unit][-1].ii:
                        continue
                    files = block_files(hw, out_dir)
                    key = _job_key(hw.module, files, board.family)
                    option = UnitOption(unit, lanes, fold, hw.ii, block_timing(hw), {}, hw)
                    options[unit].append(option)
                    wanted.append((option, key))
                    jobs.setdefault(key, (hw.module, files, board.family))
    # Glue: decision units per policy and exit, forks and gates per width (and depth), merges per exit count.
    formats = {}
    glue_jobs: dict[str, str] = {}

    def add_glue(key: str, files: dict[str, str]) -> None:
        glue_jobs[key] = _job_key(CHAR_TOP, files, board.family)
        jobs.setdefault(glue_jobs[key], (CHAR_TOP, files, board.family))

    final_head = base.heads[base.exits[-1]]
    head_units = [*heads.values(), *(u for alts in alt_heads.values() for u in alts.values())]
    for name, params in policies.items():
        fmt = DecisionFormat(PolicyName(name), final_head.out_beat, final_head.out_w, params.frac_bits)
        formats[name] = fmt
        shifts = {params.shift(k) for k in range(len(base.exits))} | set((extra_shifts or {}).get(name, ()))
        # serial units where a head option leaves the time (DecisionFormat.serial_fits)
        serials = {fmt.serial_fits(o.ii) for u in head_units for o in options[u]}
        for shift in sorted(shifts):
            for is_final in (False, True):
                for serial in sorted(serials):
                    key = decision_key(fmt, name, shift, is_final, serial)
                    add_glue(key, decision_files(fmt, shift, is_final, serial))
    dec_widths = sorted({fmt.dec_w for fmt in formats.values()})
    for position in base.exits[:-1]:
        width = base.blocks[position].out_bits
        add_glue(Characterisation.fork_key(width), fork_files(width))
        depth = queue_depth(base.blocks[position])
        add_glue(Characterisation.queue_key(width, depth), queue_files(width, depth))
        units = [heads[position], *alt_heads.get(position, {}).values()]
        depths = {
            buffer_depth(h.drain, b.hw, fmt.latency_after(h.ii))
            for fmt in formats.values()
            for u in units
            for h in options[u]
            for b in options[blocks[position]]
        }
        for dec_w in dec_widths:
            for depth in sorted(depths):
                key = Characterisation.gate_key(width, dec_w, depth)
                files = gate_files(width, dec_w, depth)
                add_glue(key, files)
    for k in range(1, len(base.exits) + 1):
        for dec_w in dec_widths:
            key = Characterisation.merge_key(k, dec_w)
            files = merge_files(k, dec_w)
            add_glue(key, files)

    figures: dict[str, dict] = {}
    todo = []
    for key, args in jobs.items():
        cached = load_json(_cache_path(key), "characterisation", "synthesising it again", RESOURCE_KEYS)
        if cached is not None:
            figures[key] = cached
        else:
            todo.append((key, args))
    if todo:
        with progress() as bar:
            task = bar.add_task(f"characterising {len(todo)} modules (Yosys)", total=len(todo))

            def done(key, result):
                _store(key, result)
                bar.update(task, advance=1)

            figures.update(run_jobs(pool, synth_job, todo, on_done=done))
    for option, key in wanted:
        option.resources = {r: int(figures[key][r]) for r in RESOURCE_KEYS}
    glue = {name: {r: int(figures[key][r]) for r in RESOURCE_KEYS} for name, key in glue_jobs.items()}
    for opts in options.values():
        opts.sort(key=lambda o: o.lanes)
    return Characterisation(
        blocks,
        heads,
        options,
        glue,
        dict(policies),
        formats,
        synthesised=len(todo),
        cached=len(jobs) - len(todo),
        seconds=time.perf_counter() - start,
        alt_heads=alt_heads,
        own_types=dict(own_types or {}),
    )


def _store(key: str, result: dict) -> None:
    atomic_write_text(_cache_path(key), json.dumps(result))


def _tmp_root() -> str:
    root = cache_dir() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return str(root)
