"""A user's dataset in an .npz file (X, y and optionally X_test, y_test): every array checked, with one line naming the file and array when it is not what the model can take."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from eehw.errors import EehwError
from eehw.model.splits import Dataset, split

_NPZ_ARRAYS = ("X", "y", "X_test", "y_test")


def npz_path(spec: Mapping[str, Any], base_dir: Path) -> Path:
    raw_path = spec.get("path")
    if not isinstance(raw_path, (str, Path)) or not str(raw_path).strip():
        raise EehwError("data.path: the npz dataset needs 'path', the .npz file with arrays X and y")
    path = Path(raw_path).expanduser()
    return path if path.is_absolute() else base_dir / path


def load_npz(spec: Mapping[str, Any], val: float, test: float, seed: int, base_dir: Path) -> Dataset:
    path = npz_path(spec, base_dir)
    arrays = _read_npz(path)
    where = f"npz data {path}"

    x = _features(arrays["X"], "X", where)
    y = checked_labels(arrays["y"], "y", where)
    if len(x) != len(y):
        raise EehwError(f"{where}: X has {len(x)} samples but y has {len(y)}; they must match")
    if len(x) == 0:
        raise EehwError(f"{where}: X and y hold 0 samples; the dataset needs samples")
    num_classes = check_classes(y, where)

    if "X_test" not in arrays:
        return split("npz", x, y, val, test, seed, source=where, num_classes=num_classes)

    if "test" in spec:
        raise EehwError(
            f"data.test: {path} brings its own X_test/y_test, so the test fraction is unused; remove 'test'"
        )
    x_test = _features(arrays["X_test"], "X_test", where)
    y_test = checked_labels(arrays["y_test"], "y_test", where)
    if x_test.shape[1:] != x.shape[1:]:
        raise EehwError(
            f"{where}: X_test samples are shaped {x_test.shape[1:]} but X samples {x.shape[1:]}; they must match"
        )
    if len(x_test) != len(y_test):
        raise EehwError(f"{where}: X_test has {len(x_test)} samples but y_test has {len(y_test)}; they must match")
    if len(x_test) == 0:
        raise EehwError(f"{where}: X_test and y_test hold 0 samples; drop them to split a test set off X, or fill them")
    bad = y_test[(y_test < 0) | (y_test >= num_classes)]
    if bad.size:
        raise EehwError(f"{where}: y_test label {int(bad[0])} is out of range; y has classes 0..{num_classes - 1}")
    return split("npz", x, y, val, 0.0, seed, source=where, num_classes=num_classes, x_test=x_test, y_test=y_test)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise EehwError(
            f"npz data {path} does not exist; fix data.path (relative paths are read from the config file's folder)"
        )
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise EehwError(
                f"npz data {path} is a single .npy array, not an .npz archive; "
                f"save it with np.savez(path, X=..., y=...)"
            )
        with loaded as archive:
            names = list(archive.files)
            for name in names:
                if name not in _NPZ_ARRAYS and name.lower() in {a.lower() for a in _NPZ_ARRAYS}:
                    raise EehwError(
                        f"npz data {path}: array {name!r} is misspelt; the names are "
                        f"case-sensitive: {', '.join(_NPZ_ARRAYS)}"
                    )
            missing = [k for k in ("X", "y") if k not in names]
            if missing:
                raise EehwError(
                    f"npz data {path}: missing array {', '.join(missing)} (it has: "
                    f"{', '.join(names) or 'nothing'}); save with np.savez(path, X=..., y=...)"
                )
            if ("X_test" in names) != ("y_test" in names):
                have, lack = ("X_test", "y_test") if "X_test" in names else ("y_test", "X_test")
                raise EehwError(f"npz data {path}: has {have} but not {lack}; give both or neither")
            arrays = {}
            for name in _NPZ_ARRAYS:
                if name in names:
                    try:
                        arrays[name] = archive[name]
                    except ValueError:
                        raise EehwError(
                            f"npz data {path}: array {name} holds Python objects; store it as a numeric array"
                        ) from None
            return arrays
    except EehwError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise EehwError(
            f"npz data {path} cannot be read as an .npz archive ({exc.__class__.__name__}); re-save it with np.savez"
        ) from None


def _features(x: np.ndarray, name: str, where: str) -> np.ndarray:
    numeric = x.dtype == bool or np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    if not numeric:
        raise EehwError(f"{where}: {name} must be numeric (integer, float or bool), got dtype {x.dtype}")
    if x.ndim < 2:
        raise EehwError(
            f"{where}: {name} has shape {x.shape}; it must be (N, features...), e.g. (N, F), (N, C, L) or (N, C, H, W)"
        )
    if not np.isfinite(x).all():
        count = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise EehwError(
            f"{where}: {name} contains {count} NaN or infinite value(s); clean or impute them before training"
        )
    x32 = x.astype(np.float32)
    if not np.isfinite(x32).all():
        raise EehwError(f"{where}: {name} has values beyond float32 range; rescale the features")
    return x32


def checked_labels(y: np.ndarray, name: str, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise EehwError(f"{where}: {name} has shape {y.shape}; it must be (N,) class indices, not one-hot or a column")
    if np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise EehwError(f"{where}: {name} contains NaN or infinite labels; labels must be integers 0..C-1")
        fractional = y[y != np.round(y)]
        if fractional.size == 0:
            return y.astype(np.int64)
        raise EehwError(
            f"{where}: {name} is not integer-valued (e.g. {fractional[0]!r}); labels must be class indices 0..C-1"
        )
    raise EehwError(f"{where}: {name} must hold integer class labels, got dtype {y.dtype}; map class names to 0..C-1")


def check_classes(y: np.ndarray, where: str) -> int:
    """Number of classes C = max label + 1, refusing negative labels and unused classes."""
    if int(y.min()) < 0:
        raise EehwError(f"{where}: label {int(y.min())} is out of range; labels must be 0..C-1")
    num_classes = int(y.max()) + 1
    present = np.bincount(y, minlength=num_classes)
    absent = np.flatnonzero(present == 0)
    if absent.size:
        raise EehwError(
            f"{where}: labels go up to {num_classes - 1} but class {int(absent[0])} "
            f"has no samples; labels must be 0..C-1 with every class present "
            f"(renumber them)"
        )
    if num_classes < 2:
        raise EehwError(f"{where}: every label is 0; a classifier needs at least 2 classes")
    return num_classes
