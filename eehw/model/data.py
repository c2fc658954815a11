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
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from eehw.cache import file_digest, package_version
from eehw.errors import EehwError
from eehw.model.npz_data import check_classes, checked_labels, load_npz, npz_path
from eehw.model.splits import Dataset, split

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

# Where Debian's dataset-fashion-mnist package puts the IDX files (data.path overrides it).
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


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
            raise EehwError(f"data.{key}: unknown key for dataset {name}; valid keys: {', '.join(_KEYS[name])}")
    val = _fraction(spec, "val", DEFAULT_VAL)
    test = _fraction(spec, "test", DEFAULT_TEST)
    if val + test >= 1:
        raise EehwError(f"data.val + data.test = {val + test:g} leaves no training data; keep their sum below 1")
    if name == "digits":
        return _digits(val, test, seed)
    if name == "mnist1d":
        return _mnist1d(spec, val, test, seed)
    if name == "fashion_mnist":
        return _fashion_mnist(spec, val, seed, Path(base_dir) if base_dir is not None else Path.cwd())
    return load_npz(spec, val, test, seed, Path(base_dir) if base_dir is not None else Path.cwd())


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
        out |= {
            f: file_digest(folder / f) if (folder / f).is_file() else "missing" for f in FASHION_MNIST_FILES.values()
        }
    elif name == "npz":
        try:
            path = npz_path(spec, Path(base_dir) if base_dir is not None else Path.cwd())
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
    return split("digits", x, y, val, test, seed, source="digits")


def _mnist1d(spec: Mapping[str, Any], val: float, test: float, seed: int) -> Dataset:
    n = spec.get("num_samples", DEFAULT_MNIST1D_SAMPLES)
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0 or n % MNIST1D_CLASSES:
        raise EehwError(
            f"data.num_samples: must be a positive multiple of {MNIST1D_CLASSES} "
            f"(mnist1d makes the same number of samples per class), got {n!r}"
        )
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
    return split("mnist1d", x, y, val, test, seed, source="mnist1d")


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
        hint = (
            "install Debian's dataset-fashion-mnist package (`make tools` does, as root)"
            if folder == FASHION_MNIST_DIR
            else "fix data.path"
        )
        raise EehwError(f"Fashion-MNIST: {', '.join(missing)} not found in {folder}; {hint}")
    arrays = {key: read_idx(folder / f) for key, f in FASHION_MNIST_FILES.items()}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise EehwError(
                f"Fashion-MNIST {part}: images {x.shape} and labels {y.shape} do not pair up "
                f"(N x 28 x 28 images, N labels); the files in {folder} are damaged"
            )
    x_train = arrays["x_train"][:, None].astype(np.float32) / 256
    x_test = arrays["x_test"][:, None].astype(np.float32) / 256
    y_train = checked_labels(arrays["y_train"], "train labels", str(folder))
    y_test = checked_labels(arrays["y_test"], "test labels", str(folder))
    num_classes = check_classes(y_train, str(folder))
    return split(
        "fashion_mnist",
        x_train,
        y_train,
        val,
        0.0,
        seed,
        source=f"Fashion-MNIST {folder}",
        num_classes=num_classes,
        x_test=x_test,
        y_test=y_test,
    )


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
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = raw[4 + 4 * dims :]
    if len(body) != int(np.prod(shape)):
        raise EehwError(f"{path}: {len(body)} data bytes for shape {shape}; the file is truncated")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)
