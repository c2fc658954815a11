"""Datasets: split sizes, stratification, determinism, layouts, and refusal of bad npz files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from eehw.errors import EehwError
from eehw.model.data import Dataset, load_dataset


def splits(d: Dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"train": (d.x_train, d.y_train), "val": (d.x_val, d.y_val), "test": (d.x_test, d.y_test)}


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset({"name": "digits"}, seed=0)


def test_digits_split_sizes_and_layout(digits: Dataset) -> None:
    sizes = digits.split_sizes
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == round(1797 * 0.2)
    assert sizes["val"] == 270  # 1797 * 0.15 = 269.55, rounded half up
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    for x, y in splits(digits).values():
        assert x.dtype == np.float32 and x.shape[1:] == (1, 8, 8)
        assert y.dtype == np.int64 and len(x) == len(y)


def test_digits_is_stratified(digits: Dataset) -> None:
    overall = np.bincount(np.concatenate([y for _, y in splits(digits).values()])) / 1797
    for _, y in splits(digits).values():
        share = np.bincount(y, minlength=10) / len(y)
        assert (share > 0).all()
        assert np.abs(share - overall).max() < 0.02


def test_digits_values_are_sixteenths(digits: Dataset) -> None:
    x = np.concatenate([x.ravel() for x, _ in splits(digits).values()])
    assert x.min() == 0 and x.max() == 1
    assert np.array_equal(x * 16, np.round(x * 16))
    assert not digits.input_signed


def test_digits_deterministic_per_seed(digits: Dataset) -> None:
    again = load_dataset({"name": "digits"}, seed=0)
    for (xa, ya), (xb, yb) in zip(splits(digits).values(), splits(again).values()):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    other = load_dataset({"name": "digits"}, seed=1)
    assert not np.array_equal(digits.x_test, other.x_test)


def test_custom_fractions() -> None:
    d = load_dataset({"name": "digits", "val": 0.1, "test": 0.1}, seed=3)
    assert d.split_sizes == {"train": 1437, "val": 180, "test": 180}


def test_mnist1d_generates_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    import mnist1d.data
    import requests

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("mnist1d must be generated, not downloaded")

    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(mnist1d.data, "get_dataset", no_network)
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)

    d = load_dataset({"name": "mnist1d", "num_samples": 1000}, seed=0)

    assert sum(d.split_sizes.values()) == 1000
    assert d.input_shape == (1, 40) and d.num_classes == 10
    for x, y in splits(d).values():
        assert x.dtype == np.float32 and x.shape[1:] == (1, 40)
        assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert d.input_signed
    # the caller's global random state is untouched by mnist1d's reseeding
    assert np.random.random() == expected_np and random.random() == expected_py
    again = load_dataset({"name": "mnist1d", "num_samples": 1000}, seed=0)
    assert np.array_equal(d.x_train, again.x_train)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"name": "cifar"}, "unknown dataset 'cifar'; valid: digits, mnist1d, fashion_mnist, npz"),
        ({"name": "digits", "path": "x.npz"}, "data.path: unknown key"),
        ({"name": "digits", "val": 1.5}, "data.val: must be a fraction"),
        ({"name": "digits", "test": "0.2"}, "data.test: must be a fraction"),
        ({"name": "digits", "val": 0.5, "test": 0.5}, "leaves no training data"),
        ({"name": "mnist1d", "num_samples": 1005}, "multiple of 10"),
        ({"name": "mnist1d", "num_samples": 20}, "too few"),
        ({"name": "npz"}, "needs 'path'"),
    ],
)
def test_bad_spec(spec: dict, expected: str) -> None:
    with pytest.raises(EehwError) as info:
        load_dataset(spec, seed=0)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


# --- npz ----------------------------------------------------------------------------------


def blobs(
    n_per_class: int = 30, classes: int = 3, shape: tuple[int, ...] = (5,), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = rng.normal(size=(len(y), *shape)) + y.reshape(-1, *([1] * len(shape)))
    return x, y


def save(tmp_path: Path, name: str = "data.npz", **arrays: np.ndarray) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def npz_error(tmp_path: Path, path: str | Path, **spec: object) -> str:
    with pytest.raises(EehwError) as info:
        load_dataset({"name": "npz", "path": str(path), **spec}, seed=0, base_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_npz_happy_path_relative_to_base_dir(tmp_path: Path) -> None:
    x, y = blobs()
    save(tmp_path, X=x, y=y)
    d = load_dataset({"name": "npz", "path": "data.npz"}, seed=0, base_dir=tmp_path)
    assert sum(d.split_sizes.values()) == 90
    assert d.input_shape == (5,) and d.num_classes == 3
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    for _, labels in splits(d).values():
        assert set(np.unique(labels)) == {0, 1, 2}


@pytest.mark.parametrize("shape", [(2, 16), (1, 6, 6)])
def test_npz_keeps_channel_layouts(tmp_path: Path, shape: tuple[int, ...]) -> None:
    x, y = blobs(shape=shape)
    save(tmp_path, X=x.astype(np.float64), y=y.astype(np.float32))  # float labels 0.0, 1.0, 2.0
    d = load_dataset({"name": "npz", "path": "data.npz"}, seed=0, base_dir=tmp_path)
    assert d.input_shape == shape and d.x_val.shape[1:] == shape


def test_npz_explicit_test_set(tmp_path: Path) -> None:
    x, y = blobs()
    xt, yt = blobs(n_per_class=4, seed=1)
    save(tmp_path, X=x, y=y, X_test=xt, y_test=yt)
    d = load_dataset({"name": "npz", "path": "data.npz", "val": 0.2}, seed=0, base_dir=tmp_path)
    assert d.split_sizes == {"train": 72, "val": 18, "test": 12}
    assert np.array_equal(d.x_test, xt.astype(np.float32))
    assert "remove 'test'" in npz_error(tmp_path, "data.npz", test=0.2)


def test_npz_missing_file(tmp_path: Path) -> None:
    message = npz_error(tmp_path, "absent.npz")
    assert "does not exist" in message and "absent.npz" in message


def test_npz_missing_key_names_the_keys_present(tmp_path: Path) -> None:
    x, y = blobs()
    save(tmp_path, features=x, y=y)
    message = npz_error(tmp_path, "data.npz")
    assert "missing array X" in message and "features" in message


def test_npz_misspelt_key(tmp_path: Path) -> None:
    x, y = blobs()
    save(tmp_path, X=x, y=y, x_test=x)
    assert "misspelt" in npz_error(tmp_path, "data.npz")


def test_npz_test_arrays_come_in_pairs(tmp_path: Path) -> None:
    x, y = blobs()
    save(tmp_path, X=x, y=y, X_test=x)
    assert "has X_test but not y_test" in npz_error(tmp_path, "data.npz")


def test_npz_nan(tmp_path: Path) -> None:
    x, y = blobs()
    x[3, 1] = np.nan
    x[4, 0] = np.inf
    save(tmp_path, X=x, y=y)
    assert "2 NaN or infinite" in npz_error(tmp_path, "data.npz")


def test_npz_non_numeric_x(tmp_path: Path) -> None:
    _, y = blobs()
    save(tmp_path, X=np.array([["a"] * 5] * len(y)), y=y)
    assert "must be numeric" in npz_error(tmp_path, "data.npz")


def test_npz_object_array(tmp_path: Path) -> None:
    x, y = blobs()
    np.savez(tmp_path / "data.npz", X=np.array([None] * len(y), dtype=object).reshape(-1, 1), y=y)
    assert "holds Python objects" in npz_error(tmp_path, "data.npz")


def test_npz_one_dimensional_x(tmp_path: Path) -> None:
    x, y = blobs()
    save(tmp_path, X=x[:, 0], y=y)
    assert "(N, features...)" in npz_error(tmp_path, "data.npz")


def test_npz_label_out_of_range(tmp_path: Path) -> None:
    x, y = blobs()
    y[0] = -1
    save(tmp_path, X=x, y=y)
    assert "label -1 is out of range" in npz_error(tmp_path, "data.npz")


def test_npz_class_missing(tmp_path: Path) -> None:
    x, y = blobs()
    y[y == 1] = 5  # labels 0, 2, 5: classes 1, 3 and 4 are missing
    save(tmp_path, X=x, y=y)
    message = npz_error(tmp_path, "data.npz")
    assert "class 1 has no samples" in message and "up to 5" in message


def test_npz_non_integer_labels(tmp_path: Path) -> None:
    x, y = blobs()
    save(tmp_path, X=x, y=y + 0.5)
    assert "not integer-valued" in npz_error(tmp_path, "data.npz")


def test_npz_length_mismatch(tmp_path: Path) -> None:
    x, y = blobs()
    save(tmp_path, X=x, y=y[:-1])
    assert "X has 90 samples but y has 89" in npz_error(tmp_path, "data.npz")


def test_npz_empty(tmp_path: Path) -> None:
    save(tmp_path, X=np.zeros((0, 5)), y=np.zeros(0, dtype=np.int64))
    assert "0 samples" in npz_error(tmp_path, "data.npz")


def test_npz_too_small_to_split_says_how_many_are_needed(tmp_path: Path) -> None:
    x, y = blobs(n_per_class=2)
    save(tmp_path, X=x, y=y)
    message = npz_error(tmp_path, "data.npz")
    assert "too few" in message and "need at least" in message


def test_npz_rare_class_cannot_reach_every_split(tmp_path: Path) -> None:
    x, y = blobs(n_per_class=40)
    keep = np.concatenate([np.flatnonzero(y != 2), np.flatnonzero(y == 2)[:4]])
    save(tmp_path, X=x[keep], y=y[keep])
    message = npz_error(tmp_path, "data.npz")
    assert "class 2 has only 4 samples" in message and "needs at least" in message


def test_npz_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    assert "cannot be read" in npz_error(tmp_path, "junk.npz")
    np.save(tmp_path / "single.npy", np.zeros((3, 2)))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    assert "not an .npz archive" in npz_error(tmp_path, "single.npz")


def _write_idx(path, array):
    """IDX as the MNIST page describes it, written independently of eehw's reader."""
    import gzip
    import struct

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion(folder, n_train=200, n_test=50):
    from eehw.model.data import FASHION_MNIST_FILES

    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28)),
        "y_train": np.arange(n_train) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28)),
        "y_test": np.arange(n_test) % 10,
    }
    folder.mkdir(exist_ok=True)
    for key, name in FASHION_MNIST_FILES.items():
        _write_idx(folder / name, arrays[key])
    return arrays


def test_fashion_mnist_keeps_the_official_test_split_and_exact_pixels(tmp_path):
    arrays = _fake_fashion(tmp_path / "fm")
    data = load_dataset({"name": "fashion_mnist", "path": "fm", "val": 0.1}, seed=0, base_dir=tmp_path)
    assert data.split_sizes == {"train": 180, "val": 20, "test": 50}
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    np.testing.assert_array_equal(data.x_test[:, 0] * 256, arrays["x_test"])  # k/256, in test-file order
    np.testing.assert_array_equal(data.y_test, arrays["y_test"])


def test_fashion_mnist_missing_or_damaged_files_are_one_line(tmp_path):
    with pytest.raises(EehwError, match=r"t10k-images-idx3-ubyte.gz.* not found in .*; fix data.path"):
        load_dataset({"name": "fashion_mnist", "path": str(tmp_path)}, seed=0)
    _fake_fashion(tmp_path / "fm")
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(EehwError, match="cannot be read as IDX"):
        load_dataset({"name": "fashion_mnist", "path": str(tmp_path / "fm")}, seed=0)
    with pytest.raises(EehwError, match="data.test: unknown key for dataset fashion_mnist"):
        load_dataset({"name": "fashion_mnist", "test": 0.2}, seed=0)


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Debian's dataset-fashion-mnist is not installed (`make tools` installs it as root)",
)
def test_fashion_mnist_from_the_debian_package():
    data = load_dataset({"name": "fashion_mnist", "val": 0.15}, seed=0)
    assert data.split_sizes == {"train": 51000, "val": 9000, "test": 10000}
    assert np.bincount(data.y_test).tolist() == [1000] * 10  # the official test set is balanced
