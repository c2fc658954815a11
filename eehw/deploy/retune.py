"""New thresholds for a built design, without regenerating or resynthesising anything.

The thresholds are run-time registers (design.md section 3: train once, deploy everywhere), so a
new accuracy or cost target is a new set of register values for the same bitstream. `eehw
retune` reads the built design's ``register_map.json`` (its exits and decision policy), picks
thresholds on the validation logits for the target (eehw.policy.thresholds, the same selection as the
flow's evaluation), predicts the test-set exit rates with the golden model, and writes the new
values into the register map (which ``EarlyExitOverlay`` loads by default) plus ``retune.json``
with the prediction and the driver call.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eehw.cache import atomic_write_text
from eehw.deploy.pynq_driver import register_value
from eehw.errors import EehwError
from eehw.hw.hls.top import ip_name
from eehw.policy.policies import PolicyParams, decide
from eehw.policy.thresholds import select_thresholds


def register_map_path(out_dir: Path) -> Path:
    return out_dir / "hls_top" / "vivado" / "register_map.json"


def rtl_register_map_path(out_dir: Path) -> Path:
    """The RTL-top variant's map (eehw.hw.rtl.axi_ip): same registers, other addresses."""
    return out_dir / "rtl_ip" / "vivado" / "register_map.json"


def _set_exit_registers(regmap: dict, thresholds: list[int | None]) -> list[dict]:
    """Write each early exit's threshold and register word into a register map; its exit entries."""
    registers = sorted((r for r in regmap["registers"] if r["what"] == "exit"), key=lambda r: r["exit"])
    bits = int(regmap["decision"]["threshold_bits"])
    for r in registers:
        t = thresholds[r["exit"]]
        r["threshold"], r["value"] = t, f"0x{register_value(t, r['exit'], bits, int(r['enable_bit'])):08X}"
    return registers


def _target(max_drop_pp: float | None, budget: float | None, exit: int | None) -> tuple[str, dict]:
    given = {k: v for k, v in (("max_drop_pp", max_drop_pp), ("max_cost", budget), ("exit", exit)) if v is not None}
    if len(given) != 1:
        raise EehwError("retune takes exactly one target: --max-drop PP, --budget COST or --exit K")
    mode = {"max_drop_pp": "target", "max_cost": "budgeted", "exit": "subnet"}[next(iter(given))]
    return mode, given


def retune(
    config: str | Path,
    board: str,
    *,
    max_drop_pp: float | None = None,
    budget: float | None = None,
    exit: int | None = None,
) -> dict:
    """Choose thresholds of the built design for one target; returns what ``retune.json`` holds."""
    from eehw import flow
    from eehw.policy.logits import cached_logits

    mode, target = _target(max_drop_pp, budget, exit)
    d = flow.run(config, board, stop_after="evaluate")
    path = register_map_path(d.out_dir)
    if not path.is_file():
        raise EehwError(
            f"no built design of {d.cfg.name} for {d.board.name} ({path} is missing); "
            f"run `eehw synth {d.cfg.name} --board {d.board.name}` first"
        )
    regmap = json.loads(path.read_text())
    golden = d.golden
    ips = [ip_name(b.name) for b in golden.blocks]
    try:
        positions = [ips.index(e["after_block"]) for e in regmap["exits"]]
        dec = regmap["decision"]
    except (KeyError, ValueError):
        raise EehwError(
            f"{path} does not describe this model's exits; rerun `eehw synth {d.cfg.name} --board {d.board.name}`"
        ) from None
    keep = golden.exit_indices(positions)
    params = PolicyParams(dec["policy"], shifts=tuple(dec["shifts"]), frac_bits=dec["frac_bits"])

    def constants(p: PolicyParams) -> tuple:
        return p.name, tuple(p.shift(i) for i in range(len(keep))), p.frac_bits

    if constants(params) != constants(flow.design_policy(d).restricted(keep)):
        raise EehwError(
            f"{path} was built for another policy or model than the config now gives; rerun "
            f"`eehw synth {d.cfg.name} --board {d.board.name}`"
        )
    if mode == "subnet" and not 0 <= exit < len(positions):
        raise EehwError(f"--exit {exit}: the built design has exits 0..{len(positions) - 1} (after blocks {positions})")
    logits = cached_logits(d.cfg, d.data, golden)
    exps = [golden.logit_exps[k] for k in keep]
    z_val = [logits["val"][k] for k in keep]
    z_test = [logits["test"][k] for k in keep]
    costs = [golden.exit_costs()[k] for k in keep]
    thresholds = select_thresholds(mode, params, z_val, exps, logits["y_val"], costs, **target)
    thresholds = [None if t is None else int(t) for t in thresholds]
    registers = _set_exit_registers(regmap, thresholds)
    exit_index, prediction = decide(params, z_test, exps, thresholds)
    y = logits["y_test"]
    result = {
        "design": d.cfg.name,
        "board": d.board.name,
        "mode": mode,
        "target": target,
        "exits": positions,
        "policy": params.name.value,
        "thresholds": thresholds,
        "registers": [{"exit": r["exit"], "address": r["address"], "value": r["value"]} for r in registers],
        "predicted_test": {
            "samples": int(len(y)),
            "exit_rates": [float(x) for x in np.bincount(exit_index, minlength=len(positions)) / len(y)],
            "accuracy": float((prediction == y).mean()),
            "final_exit_accuracy": float((np.argmax(z_test[-1], axis=1) == y).mean()),
            "mean_cost_ratio": float(np.asarray(costs)[exit_index].mean()),
        },
        "driver_call": f"EarlyExitOverlay(bitfile).set_thresholds({thresholds!r})",
        "register_map": str(path),
    }
    regmap["retuned"] = {"mode": mode, "target": target}
    atomic_write_text(path, json.dumps(regmap, indent=2) + "\n")
    rtl_path = rtl_register_map_path(d.out_dir)
    if rtl_path.is_file():  # the RTL-top variant takes the same values at its own addresses
        rtl_map = json.loads(rtl_path.read_text())
        result["rtl_registers"] = [
            {"exit": r["exit"], "address": r["address"], "value": r["value"]}
            for r in _set_exit_registers(rtl_map, thresholds)
        ]
        rtl_map["retuned"] = regmap["retuned"]
        atomic_write_text(rtl_path, json.dumps(rtl_map, indent=2) + "\n")
    atomic_write_text(d.out_dir / "retune.json", json.dumps(result, indent=2) + "\n")
    return result


def format_retune(r: dict) -> str:
    p = r["predicted_test"]
    target = ", ".join(f"{k} {v}" for k, v in r["target"].items())
    lines = [
        f"{r['design']} on {r['board']}: {r['mode']} ({target}), policy {r['policy']}",
        f"  thresholds {r['thresholds']} -> registers "
        + ", ".join(f"{x['address']}={x['value']}" for x in r["registers"]),
        f"  predicted on {p['samples']} test samples: accuracy {p['accuracy']:.2%} (final exit "
        f"{p['final_exit_accuracy']:.2%}), exit rates "
        + " / ".join(f"{x:.1%}" for x in p["exit_rates"])
        + f", mean cost {p['mean_cost_ratio']:.3f}",
        f"  written to {r['register_map']} (EarlyExitOverlay loads them); on the board: {r['driver_call']}",
    ]
    return "\n".join(lines)
