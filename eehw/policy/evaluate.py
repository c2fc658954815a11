"""Exit statistics of a trained design on the test set, from the golden integer model.

Thresholds are chosen on validation, the report is measured on test; Brevitas is run on the
test set too (every time: it is the check) so that every report states how many samples the
golden model disagrees on. The golden logits come from eehw.policy.logits (cached by content).
"""

from __future__ import annotations

import numpy as np

from eehw.artefacts import Evaluation, ExitStats
from eehw.config import Config
from eehw.model.data import Dataset
from eehw.model.export import brevitas_int_logits
from eehw.model.golden import GoldenModel
from eehw.model.train import TrainedModel
from eehw.policy.logits import cached_logits
from eehw.policy.policies import PolicyName, PolicyParams, calibrate_shift, calibrate_temperature, decide
from eehw.policy.thresholds import select_thresholds


def policy_params(
    cfg: Config, z_val: list[np.ndarray], y_val: np.ndarray, exps: list[int], name: str | None = None
) -> PolicyParams:
    """Per-exit temperatures (softmax policies) or shifts (pow2), calibrated on validation, for
    the config's policy or ``name``: the one calibration the flow, the DSE and retune share."""
    name = PolicyName(name or cfg.policy.name)
    p = cfg.policy
    if name in (PolicyName.MAX_SOFTMAX, PolicyName.ENTROPY) and p.calibrate:
        temps = tuple(calibrate_temperature(z, y_val, e) for z, e in zip(z_val, exps))
        return PolicyParams(name, temperatures=temps, frac_bits=p.frac_bits)
    if name == PolicyName.MAX_SOFTMAX_POW2:
        shifts = tuple(calibrate_shift(z, y_val, p.frac_bits) if p.calibrate else 0 for z in z_val)
        return PolicyParams(name, shifts=shifts, frac_bits=p.frac_bits)
    return PolicyParams(name, frac_bits=p.frac_bits)


def _jsonable(value):
    if value is None:
        return None
    return value.item() if isinstance(value, np.generic) else value


def evaluate(cfg: Config, data: Dataset, trained: TrainedModel, golden: GoldenModel) -> Evaluation:
    exps = golden.logit_exps
    logits = cached_logits(cfg, data, golden)
    z_val, z_test = logits["val"], logits["test"]
    z_brevitas = brevitas_int_logits(trained.model, data.x_test, golden)
    differs = np.zeros(len(data.y_test), dtype=bool)
    first_mismatch = None  # (sample, exit position) of the first disagreement, if any
    for position, a, b in zip(golden.exits, z_test, z_brevitas):
        bad = (a != b).any(axis=1)
        if bad.any() and (first_mismatch is None or int(np.argmax(bad)) < first_mismatch["sample"]):
            first_mismatch = {"sample": int(np.argmax(bad)), "exit": int(position)}
        differs |= bad

    params = policy_params(cfg, z_val, data.y_val, exps)
    costs = golden.exit_costs()
    p = cfg.policy
    thresholds = select_thresholds(
        p.mode.value,
        params,
        z_val,
        exps,
        data.y_val,
        costs,
        max_drop_pp=p.max_drop_pp,
        max_cost=p.max_cost,
        exit=p.exit,
    )
    exit_index, prediction = decide(params, z_test, exps, thresholds)
    val_exit_index, _ = decide(params, z_val, exps, thresholds)

    y = data.y_test
    correct = np.stack([np.argmax(z, axis=1) == y for z in z_test])  # (K, N)
    # Oracle: each sample leaves at its first correct exit (the final one if none is correct).
    oracle_exit = np.where(correct.any(axis=0), np.argmax(correct, axis=0), len(z_test) - 1)
    overthinking = correct[:-1].any(axis=0) & ~correct[-1]
    exits = []
    for k, position in enumerate(golden.exits):
        leaves = exit_index == k
        exits.append(
            ExitStats(
                position=position,
                head=golden.heads[position].name,
                accuracy=float(correct[k].mean()),
                exit_rate=float(leaves.mean()),
                val_exit_rate=float((val_exit_index == k).mean()),
                exited_accuracy=float((prediction[leaves] == y[leaves]).mean()) if leaves.any() else None,
                threshold=_jsonable(thresholds[k]) if k < len(thresholds) else None,
                cost_ratio=float(costs[k]),
                macs_block=golden.blocks[position].macs,
                macs_head=golden.heads[position].macs,
                logit_exp=exps[k],
            )
        )
    return Evaluation(
        config=cfg.name,
        dataset=data.name,
        samples={"train": len(data.y_train), "val": len(data.y_val), "test": len(y)},
        policy=params,
        mode=p.mode.value,
        max_drop_pp=p.max_drop_pp,
        accuracy=float((prediction == y).mean()),
        final_accuracy=float(correct[-1].mean()),
        mean_cost_ratio=float(costs[exit_index].mean()),
        oracle_cost_ratio=float(costs[oracle_exit].mean()),
        oracle_accuracy=float(correct.any(axis=0).mean()),
        overthinking=float(overthinking.mean()),
        golden_mismatches=int(differs.sum()),
        golden_first_mismatch=first_mismatch,
        golden_checked={"samples": len(y), "exits": len(z_test)},
        exits=tuple(exits),
        train_seconds=trained.seconds,
        checkpoint_cached=trained.cached,
    )


def format_report(ev: Evaluation) -> str:
    """The evaluation as a short human-readable table."""
    lines = [
        f"{ev.config} on {ev.dataset} (test {ev.samples['test']} samples), policy {ev.policy.name.value} ({ev.mode})",
        f"  {'exit':>4} {'block':>5} {'acc':>7} {'exit rate':>9} {'threshold':>12} {'cost':>6}",
    ]
    for k, e in enumerate(ev.exits):
        thr = (
            "-"
            if e.threshold is None
            else (f"{e.threshold:.4g}" if isinstance(e.threshold, float) else str(e.threshold))
        )
        thr = "final" if k == len(ev.exits) - 1 else thr
        lines.append(f"  {k:>4} {e.position:>5} {e.accuracy:>7.2%} {e.exit_rate:>9.2%} {thr:>12} {e.cost_ratio:>6.3f}")
    lines += [
        f"  early-exit accuracy {ev.accuracy:.2%} (final exit only {ev.final_accuracy:.2%})",
        f"  mean cost {ev.mean_cost_ratio:.3f} x final-only (oracle {ev.oracle_cost_ratio:.3f}), "
        f"overthinking {ev.overthinking:.2%}",
        f"  golden vs Brevitas: {ev.golden_mismatches} mismatching samples of {ev.golden_checked['samples']} "
        f"at {ev.golden_checked['exits']} exits",
    ]
    return "\n".join(lines)
