"""Stratified, seeded train/val/test splits, refused with one line when a class could not be in every split."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from eehw.errors import EehwError

# --- splitting ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/val/test splits; x float32 shaped (N, *input_shape), y int64 in 0..num_classes-1."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    input_shape: tuple[int, ...]
    num_classes: int

    @property
    def input_signed(self) -> bool:
        """Whether inputs go negative, i.e. the input quantiser needs a sign bit."""
        return any(bool(x.size) and float(x.min()) < 0 for x in (self.x_train, self.x_val, self.x_test))

    @property
    def split_sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def split(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    val: float,
    test: float,
    seed: int,
    source: str,
    num_classes: int | None = None,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
) -> Dataset:
    """Stratified train/val(/test) split fixed by ``seed``; every class reaches every split.

    With ``x_test``/``y_test`` given (a user's own test set) only val is split off ``x``.
    """
    num_classes = num_classes if num_classes is not None else int(y.max()) + 1
    n = len(y)
    n_val = _round(n * val)
    if x_test is None:
        n_test = _round(n * test)
        sizes = {"train": n - n_val - n_test, "val": n_val, "test": n_test}
        fractions = f"val {val:g}, test {test:g}"
        smallest = min(val, test, 1 - val - test)
    else:
        sizes = {"train": n - n_val, "val": n_val}
        fractions = f"val {val:g}"
        smallest = min(val, 1 - val)
    _check_splittable(y, sizes, num_classes, smallest, source, fractions)
    if x_test is None:
        x, y, x_test, y_test = _carve(x, y, n_test, seed)
    x_train, y_train, x_val, y_val = _carve(x, y, n_val, seed)
    covered = {"train": y_train, "val": y_val} | ({"test": y_test} if "test" in sizes else {})
    _check_covered(covered, num_classes, source, fractions)
    return make_dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, num_classes)


def _check_splittable(
    y: np.ndarray, sizes: dict[str, int], num_classes: int, smallest: float, source: str, fractions: str
) -> None:
    """Refuse, before splitting, data too small for every class to reach every split.

    The rule depends only on the fractions and class counts, never on the seed, so a config
    that loads with one seed loads with every seed. A class needs about 1/f samples to land in
    a split of fraction f; one more absorbs the rounding of split sizes.
    """
    per_class = max(len(sizes), math.ceil(1 / smallest - 1e-9) + 1)
    if min(sizes.values()) < num_classes:
        raise EehwError(
            f"{source}: {len(y)} samples are too few to put all {num_classes} classes "
            f"in the {'/'.join(sizes)} splits ({fractions}); need at least "
            f"{num_classes * per_class}"
        )
    counts = np.bincount(y, minlength=num_classes)
    k = int(np.argmin(counts))
    if counts[k] < per_class:
        raise EehwError(
            f"{source}: class {k} has only {int(counts[k])} samples, too few to appear "
            f"in the {'/'.join(sizes)} splits ({fractions}); each class needs at "
            f"least {per_class}"
        )


def _check_covered(splits: dict[str, np.ndarray], num_classes: int, source: str, fractions: str) -> None:
    """Safety net after splitting: the pre-check should make this unreachable."""
    for split, labels in splits.items():
        missing = np.flatnonzero(np.bincount(labels, minlength=num_classes) == 0)
        if missing.size:
            raise EehwError(
                f"{source}: class {int(missing[0])} has no samples in the {split} "
                f"split ({fractions}); add samples of that class or enlarge the split"
            )


def _carve(x: np.ndarray, y: np.ndarray, n_out: int, seed: int) -> tuple[np.ndarray, ...]:
    """Stratified split of ``n_out`` samples off ``x``: (x_kept, y_kept, x_out, y_out)."""
    from sklearn.model_selection import train_test_split

    x_kept, x_out, y_kept, y_out = train_test_split(x, y, test_size=n_out, stratify=y, random_state=seed)
    return x_kept, y_kept, x_out, y_out


def _round(value: float) -> int:
    """Round half up (Python's round() rounds half to even, surprising in split sizes)."""
    return math.floor(value + 0.5)


def make_dataset(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
) -> Dataset:
    return Dataset(
        name=name,
        x_train=np.ascontiguousarray(x_train, dtype=np.float32),
        y_train=np.ascontiguousarray(y_train, dtype=np.int64),
        x_val=np.ascontiguousarray(x_val, dtype=np.float32),
        y_val=np.ascontiguousarray(y_val, dtype=np.int64),
        x_test=np.ascontiguousarray(x_test, dtype=np.float32),
        y_test=np.ascontiguousarray(y_test, dtype=np.int64),
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        num_classes=num_classes,
    )
