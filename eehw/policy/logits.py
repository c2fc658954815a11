"""Integer logits of every exit head on the validation and test sets, cached by content.

The golden model's forward pass over both sets is most of a warm flow's evaluation (fmnist_cnn:
about 40 s for 19k samples); the threshold selection, `eehw dse` and `eehw retune` all read the
same logits, so they are computed once per trained model and code version.
"""

from __future__ import annotations

import hashlib

import numpy as np

from eehw.cache import code_hash, load_arrays, save_arrays
from eehw.paths import cache_dir


def cached_logits(cfg, data, golden) -> dict[str, list[np.ndarray] | np.ndarray]:
    """Integer logits of every head on validation and test, cached under cache_dir by the
    training hash (the weights and data) and the code that computes them (export, golden)."""
    key = hashlib.sha256(
        f"{cfg.training_hash()}|{code_hash('eehw.model.export', 'eehw.model.golden')}".encode()
    ).hexdigest()[:16]
    path = cache_dir() / "logits" / f"{cfg.name}-{key}.npz"
    k = len(golden.exits)
    names = ["y_val", "y_test", *(f"{split}{i}" for split in ("val", "test") for i in range(k))]
    z = load_arrays(path, "logits", "recomputing", names)
    # The same weights on another split of the data (a test subset) are computed afresh.
    if z is not None and np.array_equal(z["y_val"], data.y_val) and np.array_equal(z["y_test"], data.y_test):
        return {
            "val": [z[f"val{i}"] for i in range(k)],
            "test": [z[f"test{i}"] for i in range(k)],
            "y_val": z["y_val"],
            "y_test": z["y_test"],
        }
    z_val, z_test = golden.forward(data.x_val), golden.forward(data.x_test)
    save_arrays(
        path,
        y_val=data.y_val,
        y_test=data.y_test,
        **{f"val{i}": z for i, z in enumerate(z_val)},
        **{f"test{i}": z for i, z in enumerate(z_test)},
    )
    return {"val": z_val, "test": z_test, "y_val": data.y_val, "y_test": data.y_test}
