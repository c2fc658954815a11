"""Composition: a design's resources, throughput and latencies from the characterised block figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from eehw.dse.characterise import RESOURCE_KEYS, Characterisation, segment
from eehw.dse.exits import ExitConfig
from eehw.errors import EehwError
from eehw.hw.timing import (
    FIFO_LATENCY,
    GATE_RESULT_LATENCY,
    MERGE_LATENCY,
    buffer_depth,
    compose_arrays,
    gate_forward,
    queue_depth,
    single_beat,
    streaming,
)

EXHAUSTIVE_LIMIT = 4096  # folding combinations per exit configuration searched exhaustively
LAMBDAS = (0.0, *np.geomspace(0.01, 100.0, 13), math.inf)  # LUT per (weighted) cycle

# ---------------------------------------------------------------------------------------------
# Composition


@dataclass
class Composer:
    """Predicts a design's figures from the characterisation for one exit configuration."""

    char: Characterisation
    ec: ExitConfig
    units: list[str] = field(init=False)
    reach: list[float] = field(init=False)
    _segments: dict = field(init=False, default_factory=dict, repr=False)  # (exit, options) -> timings

    def __post_init__(self):
        c, ec = self.char, self.ec
        self.units = c.blocks[: ec.positions[-1] + 1] + [c.head_unit(p, ec.head(k)) for k, p in enumerate(ec.positions)]
        r = ec.reach
        self.reach = [r[b] for b in range(ec.positions[-1] + 1)] + [r[p] for p in ec.positions]
        if len(c.blocks) != ec.positions[-1] + 1:
            raise EehwError("the final exit must follow the last backbone block")

    @property
    def sizes(self) -> list[int]:
        return [len(self.char.options[u]) for u in self.units]

    def table(self, unit: str, attr: str) -> np.ndarray:
        opts = self.char.options[unit]
        if attr in RESOURCE_KEYS:
            return np.array([o.resources[attr] for o in opts], dtype=np.float64)
        return np.array([getattr(o, attr) for o in opts], dtype=np.float64)

    def evaluate(self, choice: np.ndarray) -> dict[str, np.ndarray]:
        """Figures of every row of ``choice`` (rows x units: option index per unit)."""
        c, ec = self.char, self.ec
        choice = np.asarray(choice, dtype=np.int64).reshape(-1, len(self.units))
        n_blocks = ec.positions[-1] + 1
        res = {r: np.zeros(len(choice)) for r in RESOURCE_KEYS}
        load = np.zeros(len(choice))
        for m, unit in enumerate(self.units):
            for r in RESOURCE_KEYS:
                res[r] += self.table(unit, r)[choice[:, m]]
            load = np.maximum(load, self.reach[m] * self.table(unit, "ii")[choice[:, m]])
        fmt = c.formats[ec.policy]
        # Glue: a decision unit per exit (serial or pipelined, as its head's option allows), the
        # merge, and a fork + conditional buffer + forward queue per early exit. A gate pops each
        # sample that reaches it in one cycle a beat.
        dec_latency = []
        for k in range(len(ec.positions)):
            figures, latency = self._decision_unit(k)
            for r in RESOURCE_KEYS:
                res[r] += figures[r][choice[:, n_blocks + k]]
            dec_latency.append(latency[choice[:, n_blocks + k]])
        glue = [c.glue[c.merge_key(len(ec.positions), fmt.dec_w)]]
        for p in ec.positions[:-1]:
            hw = c.options[c.blocks[p]][0].hw
            glue.append(c.glue[c.fork_key(hw.out_bits)])
            glue.append(c.glue[c.queue_key(hw.out_bits, queue_depth(hw))])
            load = np.maximum(load, ec.reach[p] * hw.out_beats)
        for g in glue:
            for r in RESOURCE_KEYS:
                res[r] += g[r]
        for k, p in enumerate(ec.positions[:-1]):
            h, b = n_blocks + k, p
            depth = self._depth_table(p, self.units[h])  # (head options, block options) -> bucketed depth
            keys = np.array(
                [
                    [c.gate_key(self._feat_w(p), fmt.dec_w, depth[i, j]) for j in range(depth.shape[1])]
                    for i in range(depth.shape[0])
                ]
            )
            for r in RESOURCE_KEYS:
                table = np.vectorize(lambda key: c.glue[key][r], otypes=[np.float64])(keys)
                res[r] += table[choice[:, h], choice[:, b]]

        # Path latency of each exit: rtl.exit_paths on arrays (RtlDesign.latency_bound is the final exit's).
        lat_unit = self._unit_timings(choice)

        def const(t):
            return tuple(np.full(len(choice), float(v)) for v in t.as_tuple())

        merge = const(single_beat(MERGE_LATENCY))
        exit_lat = []
        path = None
        for k, p in enumerate(ec.positions):
            start = 0 if not exit_lat else ec.positions[k - 1] + 1
            for b in range(start, p + 1):
                path = lat_unit[b] if path is None else compose_arrays(path, lat_unit[b])
            beats = self.char.options[self.char.blocks[p]][0].hw.out_beats
            final = k == len(ec.positions) - 1
            d = dec_latency[k]
            to_dec = compose_arrays(compose_arrays(path, lat_unit[n_blocks + k]), (d, d, d, d))
            if final:
                exit_lat.append(compose_arrays(to_dec, merge)[2])
            else:
                result_path = compose_arrays(compose_arrays(to_dec, const(single_beat(GATE_RESULT_LATENCY))), merge)
                exit_lat.append(result_path[2])
                path = compose_arrays(to_dec, const(gate_forward(beats).then(streaming(FIFO_LATENCY, beats))))
        exit_lat = np.stack(exit_lat)
        mean = (ec.exit_fractions[:, None] * exit_lat).sum(axis=0)
        return {
            **res,
            "throughput": 1.0 / load,
            "mean_latency": mean,
            "worst_latency": exit_lat[-1],
            "exit_latency": exit_lat.T,
        }

    def _unit_timings(self, choice: np.ndarray) -> list[tuple]:
        """Every unit's Timing per row of ``choice`` (timing.segment_timings: a unit's spacing
        depends on the units before and after it up to the exit's gate), as the 4 arrays
        ``compose_arrays`` takes."""
        ec, n_blocks = self.ec, self.ec.positions[-1] + 1
        out = np.zeros((len(self.units), len(choice), 4))
        for k, p in enumerate(ec.positions):
            start = 0 if k == 0 else ec.positions[k - 1] + 1
            cols = [*range(start, p + 1), n_blocks + k]
            fork_beats = 0 if k == len(ec.positions) - 1 else self.char.options[self.units[p]][0].hw.out_beats
            for row, key in enumerate(map(tuple, choice[:, cols])):
                if (k, key) not in self._segments:
                    opts = [self.char.options[self.units[c]][o] for c, o in zip(cols, key)]
                    self._segments[(k, key)] = np.array([t.as_tuple() for t in segment(opts, fork_beats)])
                out[cols, row] = self._segments[(k, key)]
        return [tuple(out[m, :, j] for j in range(4)) for m in range(len(self.units))]

    def _feat_w(self, position: int) -> int:
        return self.char.options[self.char.blocks[position]][0].hw.out_bits

    def _decision_unit(self, k: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Exit ``k``'s decision unit per option of its head: resources and latency (serial where
        the head's option leaves it the time, DecisionFormat.serial_fits)."""
        c, ec = self.char, self.ec
        fmt = c.formats[ec.policy]
        head = self.units[ec.positions[-1] + 1 + k]
        serial = [fmt.serial_fits(o.ii) for o in c.options[head]]
        shift = ec.params.shift(list(c.heads).index(ec.positions[k]))
        final = k == len(ec.positions) - 1
        units = {s: c.glue[c.decision_key(ec.policy, shift, final, s)] for s in set(serial)}
        figures = {r: np.array([units[s][r] for s in serial], dtype=np.float64) for r in RESOURCE_KEYS}
        return figures, np.array([fmt.latency(s) for s in serial], dtype=np.float64)

    def _depth_table(self, position: int, head_unit: str) -> np.ndarray:
        heads = self.char.options[head_unit]
        blocks = self.char.options[self.char.blocks[position]]
        fmt = self.char.formats[self.ec.policy]
        return np.array([[buffer_depth(h.drain, b.hw, fmt.latency_after(h.ii)) for b in blocks] for h in heads])

    def foldings(self, row) -> dict[str, tuple[int, int]]:
        out = {}
        for m, unit in enumerate(self.units):
            out.update(self.char.options[unit][int(row[m])].folding)
        return out

    # -- candidate generation

    def candidates(self, limit: int = EXHAUSTIVE_LIMIT) -> tuple[np.ndarray, str]:
        sizes = self.sizes
        total = int(np.prod(sizes))
        if total <= limit:
            return np.indices(sizes).reshape(len(sizes), -1).T, "exhaustive"
        return self._lagrangian(), "lagrangian"

    def _lagrangian(self) -> np.ndarray:
        ii = [self.table(u, "ii") * r for u, r in zip(self.units, self.reach)]
        # a head's option carries its exit's decision unit (serial or not by the head's pace)
        n_blocks = self.ec.positions[-1] + 1
        lut = [self.table(u, "LUT") for u in self.units]
        lat = [self.table(u, "latency") for u in self.units]
        for k in range(len(self.ec.positions)):
            figures, latency = self._decision_unit(k)
            lut[n_blocks + k] = lut[n_blocks + k] + figures["LUT"]
            lat[n_blocks + k] = lat[n_blocks + k] + latency
        # Two prices of a cycle: weighted by the unit's reach (the mean latency) and unweighted
        # (the final-exit path every unit is on, which the worst-case ceiling bounds).
        latencies = ([t * r for t, r in zip(lat, self.reach)], lat)
        levels = np.unique(np.concatenate(ii))
        rows = []
        for cap in levels:
            allowed = [x <= cap * (1 + 1e-12) for x in ii]
            if not all(a.any() for a in allowed):
                continue
            for lam in LAMBDAS:
                for lats in latencies:
                    row = []
                    for a, cost, t in zip(allowed, lut, lats):
                        score = t if math.isinf(lam) else cost + lam * t
                        tie = cost if math.isinf(lam) else t
                        order = np.lexsort((tie, np.where(a, score, np.inf)))
                        row.append(order[0])
                    rows.append(row)
        return np.unique(np.array(rows, dtype=np.int64), axis=0)
