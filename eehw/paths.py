"""Where shipped data (boards, templates, configs) and generated output live."""

import os
from importlib import resources
from pathlib import Path


def shipped(package: str) -> Path:
    """Folder of a data package shipped with eehw (``boards``, ``configs``, ``hls_templates``, ``rtl_sim``).

    The top-level folders of the repository are mapped into the ``eehw`` namespace by
    pyproject.toml, so this works both from a checkout and from an installed wheel.
    """
    return Path(str(resources.files(f"eehw.{package}")))


def cache_dir() -> Path:
    """Cache for checkpoints and characterisation results, shared by runs and designs."""
    root = os.environ.get("EEHW_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "eehw"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_dir() -> Path:
    """Root of generated designs; ``build/`` in the current directory unless EEHW_BUILD_DIR says otherwise."""
    return Path(os.environ.get("EEHW_BUILD_DIR", "build"))
