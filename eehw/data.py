"""Datasets as fixed, stratified train/val/test splits in the layout the model consumes.

Samples keep their natural shape with the channel first (PyTorch layout): digits are
(N, 1, 8, 8), mnist1d (N, 1, 40), Fashion-MNIST (N, 1, 28, 28), a user's npz whatever it holds
((N, F), (N, C, L) or (N, C, H, W)); an MLP flattens them itself. Everything is local (sklearn's
bundled digits, mnist1d generated rather than downloaded, Fashion-MNIST from Debian's
dataset-fashion-mnist package) and a given seed always gives the same split, so a training run
is reproducible from its config alone.
"""

from __future__ import annotations

import gzip
import math
import random
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eehw.cache import file_digest, package_version
from eehw.errors import EehwError

DATASET_NAMES = ("digits", "mnist1d", "fashion_mnist", "npz")
DEFAULT_VAL = 0.15
DEFAULT_TEST = 0.2
DEFAULT_MNIST1D_SAMPLES = 4000
MNIST1D_CLASSES = 10

_COMMON_KEYS = ("name", "val", "test")
_KEYS = {
    "digits": _COMMON_KEYS,
    "mnist1d": _COMMON_KEYS + ("num_samples",),
    "fashion_mnist": ("name", "val", "path"),  # the official 60k/10k split: no test fraction
    "npz": _COMMON_KEYS + ("path",),
}
_NPZ_ARRAYS = ("X", "y", "X_test", "y_test")
# Where Debian's dataset-fashion-mnist package puts the IDX files (data.path overrides it).
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {"x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
                       "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz"}


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


def load_dataset(spec: Mapping[str, Any], seed: int, base_dir: str | Path | None = None) -> Dataset:
    """Build the dataset a config's ``data`` section describes.

    ``base_dir`` is the config file's folder: a relative npz ``path`` is read from there so a
    config works whatever the current directory is.
    """
    if not isinstance(spec, Mapping):
        raise EehwError(f"data: must be a mapping with at least 'name', got {type(spec).__name__}")
    name = spec.get("name")
    if name not in _KEYS:
        raise EehwError(f"data.name: unknown dataset {name!r}; valid: {', '.join(DATASET_NAMES)}")
    for key in spec:
        if key not in _KEYS[name]:
            raise EehwError(f"data.{key}: unknown key for dataset {name}; "
                            f"valid keys: {', '.join(_KEYS[name])}")
    val = _fraction(spec, "val", DEFAULT_VAL)
    test = _fraction(spec, "test", DEFAULT_TEST)
    if val + test >= 1:
        raise EehwError(f"data.val + data.test = {val + test:g} leaves no training data; "
                        f"keep their sum below 1")
    if name == "digits":
        return _digits(val, test, seed)
    if name == "mnist1d":
        return _mnist1d(spec, val, test, seed)
    if name == "fashion_mnist":
        return _fashion_mnist(spec, val, seed, Path(base_dir) if base_dir is not None else Path.cwd())
    return _npz(spec, val, test, seed, Path(base_dir) if base_dir is not None else Path.cwd())


def dataset_fingerprint(spec: Mapping[str, Any], base_dir: str | Path | None = None) -> dict[str, str]:
    """What a dataset's content depends on beyond the config's ``data`` keys and seed, for
    cache keys: an npz file's bytes, or the version of the package that generates the data
    (sklearn bundles digits and splits every dataset; mnist1d generates its own)."""
    out = {"scikit-learn": package_version("scikit-learn")}
    name = spec.get("name") if isinstance(spec, Mapping) else None
    if name == "mnist1d":
        out["mnist1d"] = package_version("mnist1d")
    elif name == "fashion_mnist":
        folder = _fashion_mnist_dir(spec, Path(base_dir) if base_dir is not None else Path.cwd())
        out |= {f: file_digest(folder / f) if (folder / f).is_file() else "missing"
                for f in FASHION_MNIST_FILES.values()}
    elif name == "npz":
        try:
            path = _npz_path(spec, Path(base_dir) if base_dir is not None else Path.cwd())
        except EehwError:
            return out | {"npz": "invalid path"}  # loading the data says what is wrong
        out["npz"] = file_digest(path) if path.is_file() else "missing"
    return out


def _fraction(spec: Mapping[str, Any], key: str, default: float) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise EehwError(f"data.{key}: must be a fraction between 0 and 1 (exclusive), got {value!r}")
    return float(value)


# --- built-in datasets --------------------------------------------------------------------


def _digits(val: float, test: float, seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images  # (1797, 8, 8), integer intensities 0..16
    # k/16 is exact in a power-of-two fixed-point input quantiser; the quantiser learns whether
    # 1.0 (intensity 16) is in range or saturates.
    x = (images / 16).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    return _split("digits", x, y, val, test, seed, source="digits")


def _mnist1d(spec: Mapping[str, Any], val: float, test: float, seed: int) -> Dataset:
    n = spec.get("num_samples", DEFAULT_MNIST1D_SAMPLES)
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0 or n % MNIST1D_CLASSES:
        raise EehwError(f"data.num_samples: must be a positive multiple of {MNIST1D_CLASSES} "
                        f"(mnist1d makes the same number of samples per class), got {n!r}")
    import mnist1d.data  # imported here: it pulls in matplotlib, which only mnist1d needs

    args = mnist1d.data.get_dataset_args()
    args.num_samples = n
    args.seed = seed
    # make_dataset reseeds the global `random` and numpy generators; restore them so loading
    # data does not change what the caller's own random draws are. Never get_dataset: it
    # downloads a fixed pickle instead of generating.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = mnist1d.data.make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([raw["x"], raw["x_test"]]).astype(np.float32)[:, None, :]
    y = np.concatenate([raw["y"], raw["y_test"]]).astype(np.int64)
    return _split("mnist1d", x, y, val, test, seed, source="mnist1d")


# --- user data ----------------------------------------------------------------------------


def _fashion_mnist_dir(spec: Mapping[str, Any], base_dir: Path) -> Path:
    raw = spec.get("path")
    if raw is None:
        return FASHION_MNIST_DIR
    if not isinstance(raw, (str, Path)) or not str(raw).strip():
        raise EehwError("data.path: the folder holding Fashion-MNIST's four IDX .gz files")
    path = Path(raw).expanduser()
    return path if path.is_absolute() else base_dir / path


def _fashion_mnist(spec: Mapping[str, Any], val: float, seed: int, base_dir: Path) -> Dataset:
    """Fashion-MNIST's official split: validation carved off the 60k training images, the 10k
    test images as the test set. Pixels k/256 (not k/255), which an 8-bit unsigned fixed-point
    input quantiser at scale 2^-8 holds exactly."""
    folder = _fashion_mnist_dir(spec, base_dir)
    missing = [f for f in FASHION_MNIST_FILES.values() if not (folder / f).is_file()]
    if missing:
        hint = ("install Debian's dataset-fashion-mnist package (`make tools` does, as root)"
                if folder == FASHION_MNIST_DIR else "fix data.path")
        raise EehwError(f"Fashion-MNIST: {', '.join(missing)} not found in {folder}; {hint}")
    arrays = {key: read_idx(folder / f) for key, f in FASHION_MNIST_FILES.items()}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise EehwError(f"Fashion-MNIST {part}: images {x.shape} and labels {y.shape} do not pair up "
                            f"(N x 28 x 28 images, N labels); the files in {folder} are damaged")
    x_train = (arrays["x_train"][:, None].astype(np.float32) / 256)
    x_test = (arrays["x_test"][:, None].astype(np.float32) / 256)
    y_train = _labels(arrays["y_train"], "train labels", str(folder))
    y_test = _labels(arrays["y_test"], "test labels", str(folder))
    num_classes = _check_classes(y_train, str(folder))
    return _split("fashion_mnist", x_train, y_train, val, 0.0, seed, source=f"Fashion-MNIST {folder}",
                  num_classes=num_classes, x_test=x_test, y_test=y_test)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format: magic 0 0 <type> <dims>, big-endian sizes, then the data),
    gzip-compressed or not, as a numpy array. Only unsigned bytes (type 0x08), all MNIST uses;
    written here because no kept library reads IDX without a download step."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise EehwError(f"{path}: cannot be read as IDX ({type(exc).__name__}); the file is damaged") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] < 1:
        raise EehwError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    body = raw[4 + 4 * dims:]
    if len(body) != int(np.prod(shape)):
        raise EehwError(f"{path}: {len(body)} data bytes for shape {shape}; the file is truncated")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _npz_path(spec: Mapping[str, Any], base_dir: Path) -> Path:
    raw_path = spec.get("path")
    if not isinstance(raw_path, (str, Path)) or not str(raw_path).strip():
        raise EehwError("data.path: the npz dataset needs 'path', the .npz file with arrays X and y")
    path = Path(raw_path).expanduser()
    return path if path.is_absolute() else base_dir / path


def _npz(spec: Mapping[str, Any], val: float, test: float, seed: int, base_dir: Path) -> Dataset:
    path = _npz_path(spec, base_dir)
    arrays = _read_npz(path)
    where = f"npz data {path}"

    x = _features(arrays["X"], "X", where)
    y = _labels(arrays["y"], "y", where)
    if len(x) != len(y):
        raise EehwError(f"{where}: X has {len(x)} samples but y has {len(y)}; they must match")
    if len(x) == 0:
        raise EehwError(f"{where}: X and y hold 0 samples; the dataset needs samples")
    num_classes = _check_classes(y, where)

    if "X_test" not in arrays:
        return _split("npz", x, y, val, test, seed, source=where, num_classes=num_classes)

    if "test" in spec:
        raise EehwError(f"data.test: {path} brings its own X_test/y_test, so the test fraction "
                        f"is unused; remove 'test'")
    x_test = _features(arrays["X_test"], "X_test", where)
    y_test = _labels(arrays["y_test"], "y_test", where)
    if x_test.shape[1:] != x.shape[1:]:
        raise EehwError(f"{where}: X_test samples are shaped {x_test.shape[1:]} but X samples "
                        f"{x.shape[1:]}; they must match")
    if len(x_test) != len(y_test):
        raise EehwError(f"{where}: X_test has {len(x_test)} samples but y_test has {len(y_test)}; "
                        f"they must match")
    if len(x_test) == 0:
        raise EehwError(f"{where}: X_test and y_test hold 0 samples; drop them to split a test set "
                        f"off X, or fill them")
    bad = y_test[(y_test < 0) | (y_test >= num_classes)]
    if bad.size:
        raise EehwError(f"{where}: y_test label {int(bad[0])} is out of range; y has classes "
                        f"0..{num_classes - 1}")
    return _split("npz", x, y, val, 0.0, seed, source=where, num_classes=num_classes,
                  x_test=x_test, y_test=y_test)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise EehwError(f"npz data {path} does not exist; fix data.path (relative paths are read "
                        f"from the config file's folder)")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise EehwError(f"npz data {path} is a single .npy array, not an .npz archive; "
                            f"save it with np.savez(path, X=..., y=...)")
        with loaded as archive:
            names = list(archive.files)
            for name in names:
                if name not in _NPZ_ARRAYS and name.lower() in {a.lower() for a in _NPZ_ARRAYS}:
                    raise EehwError(f"npz data {path}: array {name!r} is misspelt; the names are "
                                    f"case-sensitive: {', '.join(_NPZ_ARRAYS)}")
            missing = [k for k in ("X", "y") if k not in names]
            if missing:
                raise EehwError(f"npz data {path}: missing array {', '.join(missing)} (it has: "
                                f"{', '.join(names) or 'nothing'}); save with np.savez(path, X=..., y=...)")
            if ("X_test" in names) != ("y_test" in names):
                have, lack = ("X_test", "y_test") if "X_test" in names else ("y_test", "X_test")
                raise EehwError(f"npz data {path}: has {have} but not {lack}; give both or neither")
            arrays = {}
            for name in _NPZ_ARRAYS:
                if name in names:
                    try:
                        arrays[name] = archive[name]
                    except ValueError:
                        raise EehwError(f"npz data {path}: array {name} holds Python objects; "
                                        f"store it as a numeric array") from None
            return arrays
    except EehwError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise EehwError(f"npz data {path} cannot be read as an .npz archive "
                        f"({exc.__class__.__name__}); re-save it with np.savez") from None


def _features(x: np.ndarray, name: str, where: str) -> np.ndarray:
    numeric = x.dtype == bool or np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    if not numeric:
        raise EehwError(f"{where}: {name} must be numeric (integer, float or bool), got dtype {x.dtype}")
    if x.ndim < 2:
        raise EehwError(f"{where}: {name} has shape {x.shape}; it must be (N, features...), e.g. "
                        f"(N, F), (N, C, L) or (N, C, H, W)")
    if not np.isfinite(x).all():
        count = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise EehwError(f"{where}: {name} contains {count} NaN or infinite value(s); clean or "
                        f"impute them before training")
    x32 = x.astype(np.float32)
    if not np.isfinite(x32).all():
        raise EehwError(f"{where}: {name} has values beyond float32 range; rescale the features")
    return x32


def _labels(y: np.ndarray, name: str, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise EehwError(f"{where}: {name} has shape {y.shape}; it must be (N,) class indices, "
                        f"not one-hot or a column")
    if np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise EehwError(f"{where}: {name} contains NaN or infinite labels; labels must be "
                            f"integers 0..C-1")
        fractional = y[y != np.round(y)]
        if fractional.size == 0:
            return y.astype(np.int64)
        raise EehwError(f"{where}: {name} is not integer-valued (e.g. {fractional[0]!r}); labels "
                        f"must be class indices 0..C-1")
    raise EehwError(f"{where}: {name} must hold integer class labels, got dtype {y.dtype}; map "
                    f"class names to 0..C-1")


def _check_classes(y: np.ndarray, where: str) -> int:
    """Number of classes C = max label + 1, refusing negative labels and unused classes."""
    if int(y.min()) < 0:
        raise EehwError(f"{where}: label {int(y.min())} is out of range; labels must be 0..C-1")
    num_classes = int(y.max()) + 1
    present = np.bincount(y, minlength=num_classes)
    absent = np.flatnonzero(present == 0)
    if absent.size:
        raise EehwError(f"{where}: labels go up to {num_classes - 1} but class {int(absent[0])} "
                        f"has no samples; labels must be 0..C-1 with every class present "
                        f"(renumber them)")
    if num_classes < 2:
        raise EehwError(f"{where}: every label is 0; a classifier needs at least 2 classes")
    return num_classes


# --- splitting ----------------------------------------------------------------------------


def _split(name: str, x: np.ndarray, y: np.ndarray, val: float, test: float, seed: int,
           source: str, num_classes: int | None = None, x_test: np.ndarray | None = None,
           y_test: np.ndarray | None = None) -> Dataset:
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
    return _dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, num_classes)


def _check_splittable(y: np.ndarray, sizes: dict[str, int], num_classes: int, smallest: float,
                      source: str, fractions: str) -> None:
    """Refuse, before splitting, data too small for every class to reach every split.

    The rule depends only on the fractions and class counts, never on the seed, so a config
    that loads with one seed loads with every seed. A class needs about 1/f samples to land in
    a split of fraction f; one more absorbs the rounding of split sizes.
    """
    per_class = max(len(sizes), math.ceil(1 / smallest - 1e-9) + 1)
    if min(sizes.values()) < num_classes:
        raise EehwError(f"{source}: {len(y)} samples are too few to put all {num_classes} classes "
                        f"in the {'/'.join(sizes)} splits ({fractions}); need at least "
                        f"{num_classes * per_class}")
    counts = np.bincount(y, minlength=num_classes)
    k = int(np.argmin(counts))
    if counts[k] < per_class:
        raise EehwError(f"{source}: class {k} has only {int(counts[k])} samples, too few to appear "
                        f"in the {'/'.join(sizes)} splits ({fractions}); each class needs at "
                        f"least {per_class}")


def _check_covered(splits: dict[str, np.ndarray], num_classes: int, source: str,
                   fractions: str) -> None:
    """Safety net after splitting: the pre-check should make this unreachable."""
    for split, labels in splits.items():
        missing = np.flatnonzero(np.bincount(labels, minlength=num_classes) == 0)
        if missing.size:
            raise EehwError(f"{source}: class {int(missing[0])} has no samples in the {split} "
                            f"split ({fractions}); add samples of that class or enlarge the split")


def _carve(x: np.ndarray, y: np.ndarray, n_out: int, seed: int) -> tuple[np.ndarray, ...]:
    """Stratified split of ``n_out`` samples off ``x``: (x_kept, y_kept, x_out, y_out)."""
    from sklearn.model_selection import train_test_split

    x_kept, x_out, y_kept, y_out = train_test_split(
        x, y, test_size=n_out, stratify=y, random_state=seed)
    return x_kept, y_kept, x_out, y_out


def _round(value: float) -> int:
    """Round half up (Python's round() rounds half to even, surprising in split sizes)."""
    return math.floor(value + 0.5)


def _dataset(name: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
             y_val: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, num_classes: int) -> Dataset:
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
