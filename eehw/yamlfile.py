"""Reading the project's YAML files (configs, boards) with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from eehw.errors import EehwError


def read_yaml(path: Path, what: str) -> Any:
    """Parse ``path``; a syntax error names the line and column, e.g. ``config x.yaml: invalid YAML at line 3``."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "could not be parsed"
        raise EehwError(f"{what} {path}: invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EehwError(f"{what} {path}: cannot be read ({exc.__class__.__name__}); "
                        f"check that it is a readable text file") from None
