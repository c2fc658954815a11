"""Random legal multi-exit models and the check that every level of the flow computes them alike.

The property test (tests/test_random_models.py) draws ``ModelSpec``s with hypothesis; any model
a spec describes is within the quantisation contract (README, "The contract"), so the flow must
carry it bit-exactly: Brevitas == golden == RTL early-exit design == RTL no-exit baseline ==
hls4ml C-sim, exit index and class included. Specs cover MLPs and 1-D/2-D CNNs, odd and prime
widths that the default folding cannot divide evenly, weight and activation widths 2-8, signed
and unsigned inputs, logit widths 8-16, requantisation shifts of both signs, and blocks and
heads with and without their own input and output quantisers (the flow completes those).
A spec is drawn from one seed (``random_spec``), and the model built from it is seeded by it
too, so a failing seed rebuilds the same model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from brevitas.nn import QuantConv1d, QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import (
    Int8ActPerTensorFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Int16Bias,
    Uint8ActPerTensorFixedPoint,
)
from torch import nn

from eehw.hw.plan import DesignPlan, plan_design
from eehw.hw.stages import MvuStage, RequantStage
from eehw.model.golden import GoldenModel
from eehw.model.net import MultiExitNet, complete_structure
from eehw.policy.policies import PolicyParams, decide, margin_score, pow2_softmax_sum

Quantiser = tuple[int, bool]  # (bits, signed) of a QuantIdentity


@dataclass(frozen=True)
class BlockSpec:
    width: int  # output features (MLP) or channels (CNN)
    act_bits: int  # its QuantReLU
    in_quant: Quantiser | None  # its own input QuantIdentity; None: the flow inserts one (not block 0)
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    pool: bool = False  # 2 (x 2) max pool after the ReLU


@dataclass(frozen=True)
class HeadSpec:
    after: int  # the block it reads
    in_quant: Quantiser | None  # None: the flow inserts the identity input quantiser
    logit_bits: int | None  # its output QuantIdentity; None: the flow appends one of ModelSpec.logit_bits
    single_layer: bool = False  # a bare QuantLinear (needs in_quant and logit_bits None, and a flat input)


@dataclass(frozen=True)
class ModelSpec:
    input_shape: tuple[int, ...]  # (features,), (C, L) or (C, H, W)
    input_bits: int
    input_signed: bool
    blocks: tuple[BlockSpec, ...]
    heads: tuple[HeadSpec, ...]
    weight_bits: int
    logit_bits: int  # given to heads without an output quantiser (a factory config's model.logit_bits)
    classes: int
    weight_exp: int  # weights scaled by 2**weight_exp before calibration: shifts of both signs
    input_exp: int  # inputs drawn at 2**input_exp
    policy: str  # margin or max_softmax_pow2
    seed: int

    @property
    def dims(self) -> int:
        return len(self.input_shape) - 1


WIDTHS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13]  # primes and sizes the default folding cannot split evenly


def random_spec(seed: int) -> ModelSpec:
    """The legal model that ``seed`` draws (numpy's generator: the same seed, the same spec)."""
    rng = np.random.default_rng(seed)

    def pick(lo: int, hi: int) -> int:  # inclusive
        return int(rng.integers(lo, hi + 1))

    def coin() -> bool:
        return bool(rng.integers(2))

    def quantiser() -> Quantiser | None:
        return None if coin() else (pick(2, 8), coin())

    dims = pick(0, 2)
    shape = [(pick(2, 20),), (pick(1, 3), pick(4, 16)), (pick(1, 2), pick(3, 8), pick(3, 8))][dims]
    blocks, spatial = [], list(shape[1:])
    for k in range(pick(1, 3)):
        kernel = stride = 1
        pad, pool = 0, False
        if dims:
            kernel = pick(1, min(3, *spatial))
            pad, stride = pick(0, kernel // 2), pick(1, 2)
            spatial = [(s + 2 * pad - kernel) // stride + 1 for s in spatial]
            pool = min(spatial) >= 2 and coin()
            spatial = [s // 2 for s in spatial] if pool else spatial
        blocks.append(
            BlockSpec(int(rng.choice(WIDTHS)), pick(2, 8), None if k == 0 else quantiser(), kernel, stride, pad, pool)
        )
    positions = [k for k in range(len(blocks) - 1) if rng.random() < 0.6] + [len(blocks) - 1]
    # One logit width for every head (their decisions share one result stream): the head's own
    # output quantiser's or, where it has none, the config's logit_bits.
    logit_bits = pick(8, 16)
    heads = []
    for position in positions:
        single = dims == 0 and coin() and coin()
        heads.append(
            HeadSpec(position, None if single else quantiser(), None if single or coin() else logit_bits, single)
        )
    return ModelSpec(
        shape,
        pick(2, 8),
        coin(),
        tuple(blocks),
        tuple(heads),
        pick(2, 8),
        logit_bits,
        pick(2, 10),
        pick(-3, 3),
        pick(-3, 3),
        "margin" if coin() else "max_softmax_pow2",
        seed,
    )


def _quant(q: Quantiser) -> QuantIdentity:
    bits, signed = q
    act = Int8ActPerTensorFixedPoint if signed else Uint8ActPerTensorFixedPoint
    return QuantIdentity(act_quant=act, bit_width=bits, return_quant_tensor=True)


def _weighted(dims: int, n_in: int, n_out: int, block: BlockSpec | None, bits: int) -> nn.Module:
    common = dict(
        bias=True,
        weight_quant=Int8WeightPerTensorFixedPoint,
        weight_bit_width=bits,
        bias_quant=Int16Bias,
        return_quant_tensor=True,
    )
    if dims == 0 or block is None:
        return QuantLinear(n_in, n_out, **common)
    cls = QuantConv1d if dims == 1 else QuantConv2d
    return cls(n_in, n_out, block.kernel, stride=block.stride, padding=block.pad, **common)


def block_shapes(spec: ModelSpec) -> list[tuple[int, ...]]:
    """The output shape of every block (the spec's drawing keeps them non-empty)."""
    shapes, shape = [], spec.input_shape
    for b in spec.blocks:
        if spec.dims == 0:
            shape = (b.width,)
        else:
            spatial = [(s + 2 * b.pad - b.kernel) // b.stride + 1 for s in shape[1:]]
            if b.pool:
                spatial = [s // 2 for s in spatial]
            shape = (b.width, *spatial)
        shapes.append(shape)
    return shapes


def build_model(spec: ModelSpec) -> tuple[nn.Module, np.ndarray]:
    """The spec's Brevitas model, completed as the flow completes a user's model and calibrated
    (runtime-statistics quantisers settled), and 300 inputs drawn from its input distribution."""
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    dims, shape = spec.dims, spec.input_shape
    shapes = block_shapes(spec)
    blocks = []
    for k, b in enumerate(spec.blocks):
        layers: list[nn.Module] = []
        in_quant = (spec.input_bits, spec.input_signed) if k == 0 else b.in_quant
        if in_quant is not None:
            layers.append(_quant(in_quant))
        layers += [
            _weighted(dims, shape[0], b.width, b, spec.weight_bits),
            QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=b.act_bits, return_quant_tensor=True),
        ]
        if b.pool:
            layers.append((nn.MaxPool1d if dims == 1 else nn.MaxPool2d)(2))
        blocks.append(nn.Sequential(*layers))
        shape = shapes[k]
    heads = {}
    for h in spec.heads:
        n_in = int(np.prod(shapes[h.after]))
        linear = _weighted(0, n_in, spec.classes, None, spec.weight_bits)
        if h.single_layer:
            heads[h.after] = linear
            continue
        layers = [_quant(h.in_quant)] if h.in_quant is not None else []
        if len(shapes[h.after]) > 1:
            layers.append(nn.Flatten())
        layers.append(linear)
        if h.logit_bits is not None:
            layers.append(_quant((h.logit_bits, True)))
        heads[h.after] = nn.Sequential(*layers)
    model = MultiExitNet(blocks, heads)
    complete_structure(model, spec.logit_bits)
    weighted = [m for m in model.modules() if isinstance(m, (QuantLinear, QuantConv1d, QuantConv2d))]
    with torch.no_grad():
        for m in weighted:
            m.weight.mul_(2.0**spec.weight_exp)

    def draw(n: int) -> np.ndarray:
        x = rng.normal(0, 2.0**spec.input_exp, size=(n, *spec.input_shape)).astype(np.float32)
        return x if spec.input_signed else np.abs(x)

    # Positive biases of the pre-activations' order keep every ReLU alive (a dead one has no
    # scale to calibrate and is refused); a model that still has one gets larger biases.
    bias = 2.0 ** (spec.weight_exp + spec.input_exp)
    for _ in range(6):
        with torch.no_grad():
            for m in weighted:
                m.bias.copy_(torch.from_numpy(bias * (1 + np.abs(rng.normal(0, 0.5, m.bias.shape)))))
        _calibrate(model, draw)
        if not _dead_activations(model, torch.from_numpy(draw(64))):
            break
        bias *= 8
    return model, draw(300)


def _calibrate(model: nn.Module, draw) -> None:
    """Training-mode passes, as the first steps of training, so runtime-statistics scales settle."""
    model.train()
    with torch.no_grad():
        for _ in range(40):
            model(torch.from_numpy(draw(32)))
    model.eval()


def _dead_activations(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether a quantiser saw (almost) only zeros: its scale collapses to Brevitas's floor."""
    outputs = []
    hooks = [
        m.register_forward_hook(lambda mod, args, out: outputs.append(out))
        for m in model.modules()
        if isinstance(m, (QuantReLU, QuantIdentity))
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return any(float(out.value.max()) <= 0 or float(out.scale.max()) < 1e-8 for out in outputs)


def renamed(plan: DesignPlan, prefix: str) -> DesignPlan:
    """The plan with every block and head module named ``eehw_<prefix>_...``: designs of many
    models can then share a Verilator cache without their modules' names meaning two things."""

    def rename(b):
        return dataclasses.replace(b, name=f"{prefix}.{b.name}")

    return dataclasses.replace(
        plan, blocks=tuple(rename(b) for b in plan.blocks), heads={k: rename(h) for k, h in plan.heads.items()}
    )


def policy_and_thresholds(spec: ModelSpec, golden: GoldenModel, logits: list[np.ndarray]):
    """The spec's policy with thresholds at each early exit's median score, so samples leave
    at every exit."""
    if spec.policy == "margin":
        return PolicyParams("margin"), [int(np.median(margin_score(z))) for z in logits[:-1]]
    params = PolicyParams("max_softmax_pow2", shifts=tuple([1] * len(logits)), frac_bits=6)
    return params, [int(np.median(pow2_softmax_sum(z, 1, 6))) for z in logits[:-1]]


def shifts(plan: DesignPlan) -> list[int]:
    """The requantisation shifts of a design's MVUs and requantisers (coverage of the drawing)."""
    stages = [s for b in [*plan.blocks, *plan.heads.values()] for s in b.stages]
    return [s.shift for s in stages if isinstance(s, (MvuStage, RequantStage))]


def check_levels(spec: ModelSpec, out_dir: Path, board=None) -> dict:
    """Every level's disagreement with the golden model, in samples (all 0 when the flow is
    right), plus the design's shifts. ``board`` given: the hls4ml C-sim chain too (slower)."""
    from eehw.hw.measure import check_against_golden, expected_outputs
    from eehw.hw.rtl.design import generate
    from eehw.hw.rtl.sim import simulate
    from eehw.hw.timing import exit_paths
    from eehw.model.export import brevitas_int_logits, export_golden

    model, x = build_model(spec)
    golden = export_golden(model, torch.from_numpy(x[:2]))
    logits = golden.forward(x)
    report: dict = {"seed": spec.seed, "samples": len(x), "exits": golden.exits}
    report["brevitas"] = int(sum((a != b).any(1) for a, b in zip(logits, brevitas_int_logits(model, x, golden))).sum())
    params, thresholds = policy_and_thresholds(spec, golden, logits)
    want_exit, want_class = decide(params, logits, golden.logit_exps, thresholds)
    x_int = golden.quantize_input(x)
    for kind, exits in (("early_exit", None), ("baseline", [])):
        if kind == "baseline" and len(golden.exits) == 1:
            break  # with no early exit the baseline is the same design
        plan = renamed(plan_design(golden, f"p{spec.seed}_{kind}", exits), f"p{spec.seed}_{kind}")
        rtl = generate(plan, params, out_dir / kind, golden.exits)
        t = thresholds if kind == "early_exit" else []
        exp_exit, exp_class = expected_outputs(golden, rtl, params, x, t)
        # The early-exit design streamed with its thresholds, then every sample forced to the final
        # exit one at a time (the worst case); the baseline has only that one path.
        never = [None] * len(t)
        runs = [simulate(rtl, x_int, t, quick=True)] if t else []
        runs.append(simulate(rtl, x_int, never, one_at_a_time=True, quick=True))
        final_exit, final_class = expected_outputs(golden, rtl, params, x, never)
        checks = ([check_against_golden(runs[0], exp_exit, exp_class)] if t else []) + [
            check_against_golden(runs[-1], final_exit, final_class)
        ]
        report[f"rtl {kind}"] = sum(c["mismatches"] + c["lost"] + c["duplicated"] for c in checks)
        # The stated worst case is beat-exact: any difference, above or below, is a timing rule
        # that does not match its module.
        worst = int(runs[-1].latency.max())
        report[f"rtl {kind} worst latency off bound"] = abs(worst - rtl.latency_bound)
        # The DSE's composed bound (eehw.hw.timing.exit_paths) must never promise less.
        report[f"rtl {kind} composed bound below worst"] = max(0, worst - exit_paths(plan, rtl.decision)[-1].latency)
        if kind == "early_exit":
            report["shifts"] = shifts(plan)
            taken = runs[0].exit_index[runs[0].exit_index >= 0]
            report["rtl exit rates"] = np.bincount(taken, minlength=len(golden.exits)).tolist()
    if board is not None:
        from eehw.hw.hls.build import build_hls_projects
        from eehw.hw.hls.chain import chain_check, run_chain
        from eehw.hw.hls.settings import HlsSettings

        names = [b.name for b in golden.blocks] + [golden.heads[k].name for k in golden.exits]
        projects = build_hls_projects(
            model, golden, board, out_dir, settings={n: HlsSettings(io_type="io_stream") for n in names}
        )
        counts, _ = chain_check(projects, golden, x)
        hls_exit, hls_class = decide(params, run_chain(projects, golden, x), golden.logit_exps, thresholds)
        report["hls"] = sum(counts.values()) + int(((hls_exit != want_exit) | (hls_class != want_class)).sum())
    return report


def check_seed(seed: int, out_dir: Path, hls: bool) -> dict:
    """check_levels of ``random_spec(seed)`` (a picklable job for a process pool); ``hls``: on pynq-z2."""
    from eehw.board import load_board

    try:
        return check_levels(random_spec(seed), out_dir, load_board("pynq-z2") if hls else None)
    except Exception as exc:  # a legal model the flow refuses or crashes on is a failure of its own
        return {"seed": seed, "error": f"{type(exc).__name__}: {exc}"}


LEVELS = (
    "error",
    "brevitas",
    "rtl early_exit",
    "rtl baseline",
    "rtl early_exit worst latency off bound",
    "rtl baseline worst latency off bound",
    "rtl early_exit composed bound below worst",
    "rtl baseline composed bound below worst",
    "hls",
)
