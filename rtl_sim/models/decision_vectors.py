"""The decision unit's shared test vectors: one text file that the Verilog unit (cocotb), the HLS
header (g++ C-sim) and the HLS top's decision IPs are all driven with, so the three
implementations are held to the same rows, thresholds and expected outputs.

The expected exit flag, class and confidence come from ``eehw.policy.policies`` (margin_score,
pow2_softmax_sum, argmax), the Python reference of every decision in the flow. Rows are the
hard cases: ties (including all-equal rows), saturated extremes, one-hot and one-cold rows,
clustered values, and thresholds at a score, one below and one above, with the exit enabled
and disabled. The file holds several formats; each consumer takes the ones it builds.

File layout (whitespace-separated integers)::

    case <policy> <classes> <logit_bits> <shift> <frac_bits>
    group <threshold> <enable>
    <z_0> ... <z_{C-1}> <exit> <class> <confidence>      (one line per row)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eehw.policy.policies import margin_score, pow2_softmax_sum, pow2_sum_bits

#: (policy, classes, logit bits, shift, frac bits): the HLS top's test design (4 x 8-bit logits)
#: under both policies, and the width of the shipped configs' logits.
CASES = (
    ("margin", 4, 8, 0, 8),
    ("max_softmax_pow2", 4, 8, 1, 8),
    ("margin", 10, 16, 0, 8),
    ("max_softmax_pow2", 10, 16, 3, 8),
)


@dataclass
class Group:
    threshold: int
    enable: int
    z: np.ndarray  # (rows, classes) int64
    exit: np.ndarray
    cls: np.ndarray
    conf: np.ndarray


@dataclass
class Case:
    policy: str
    classes: int
    logit_bits: int
    shift: int
    frac_bits: int
    groups: list[Group] = field(default_factory=list)

    @property
    def key(self) -> tuple:
        return self.policy, self.classes, self.logit_bits, self.shift, self.frac_bits

    @property
    def pow2(self) -> bool:
        return self.policy == "max_softmax_pow2"

    @property
    def thr_bits(self) -> int:
        """The threshold register's width (DecisionFormat.thr_w): the confidence's."""
        return pow2_sum_bits(self.classes, self.frac_bits) if self.pow2 else self.logit_bits + 1

    def scores(self, z: np.ndarray) -> np.ndarray:
        return pow2_softmax_sum(z, self.shift, self.frac_bits) if self.pow2 else margin_score(z)

    def group(self, z: np.ndarray, threshold: int, enable: int) -> Group:
        score = self.scores(z)
        passed = score <= threshold if self.pow2 else score >= threshold
        return Group(threshold, enable, z, (passed & bool(enable)).astype(np.int64), np.argmax(z, axis=1), score)


def _rows(case: Case, rng: np.random.Generator) -> np.ndarray:
    n, w = case.classes, case.logit_bits
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    uniform = rng.integers(lo, hi + 1, size=(40, n))
    base = rng.integers(lo, hi + 1, size=(60, 1))
    scale = 1 << rng.integers(0, w, size=(60, 1))
    clustered = np.clip(base + rng.integers(-(1 << 30), 1 << 30, size=(60, n)) % (2 * scale + 1) - scale, lo, hi)
    ties = clustered[:30].copy()
    for r in range(len(ties)):
        where = rng.choice(n, size=int(rng.integers(2, n + 1)), replace=False)
        ties[r, where] = ties[r].max()
    equal = np.array([[v] * n for v in (lo, hi, 0, -1, 1)])
    one_hot = np.full((n, n), lo)
    np.fill_diagonal(one_hot, hi)
    one_cold = np.full((n, n), hi)
    np.fill_diagonal(one_cold, lo)
    extremes = np.where(rng.integers(0, 2, size=(20, n)) == 1, hi, lo)
    z = np.concatenate([uniform, clustered, ties, equal, one_hot, one_cold, extremes]).astype(np.int64)
    return z[rng.permutation(len(z))]


def build(seed: int = 0) -> list[Case]:
    """Every case's groups, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    cases = []
    for key in CASES:
        case = Case(*key)
        z = _rows(case, rng)
        thr_max = (1 << case.thr_bits) - 1
        scores = case.scores(z)
        picks = sorted({int(s) for s in rng.choice(scores, size=3)})
        thresholds = sorted({0, 1, thr_max, *[t + d for t in picks for d in (-1, 0, 1) if 0 <= t + d <= thr_max]})
        for thr in thresholds:
            case.groups.append(case.group(z, thr, 1))
        case.groups.append(case.group(z, 0 if case.pow2 else thr_max, 0))  # disabled: never exits
        case.groups.append(case.group(z, thr_max if case.pow2 else 0, 0))  # disabled, always-pass threshold
        cases.append(case)
    return cases


def write(path: Path, seed: int = 0) -> Path:
    lines = ["# eehw decision-unit vectors (rtl_sim/models/decision_vectors.py)"]
    for case in build(seed):
        lines.append("case " + " ".join(map(str, case.key)))
        for g in case.groups:
            lines.append(f"group {g.threshold} {g.enable}")
            for row, e, c, s in zip(g.z, g.exit, g.cls, g.conf):
                lines.append(" ".join(map(str, [*row.tolist(), int(e), int(c), int(s)])))
    path.write_text("\n".join(lines) + "\n")
    return path


def read(path: Path) -> list[Case]:
    cases: list[Case] = []
    rows: list[list[int]] = []

    def close():
        if rows:
            a = np.array(rows, dtype=np.int64)
            g = cases[-1].groups[-1]
            g.z, g.exit, g.cls, g.conf = a[:, :-3], a[:, -3], a[:, -2], a[:, -1]
            rows.clear()

    for line in Path(path).read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        head, *rest = line.split()
        if head == "case":
            close()
            cases.append(Case(rest[0], *map(int, rest[1:])))
        elif head == "group":
            close()
            e = np.zeros(0, dtype=np.int64)
            cases[-1].groups.append(Group(int(rest[0]), int(rest[1]), e, e, e, e))
        else:
            rows.append([int(head), *map(int, rest)])
    close()
    return cases


if __name__ == "__main__":
    import sys

    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "decision_vectors.txt")))
