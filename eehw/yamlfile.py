"""Reading the project's YAML files (configs, boards): parsing, and one checker of their values
whose every error is one line naming the file and the dotted key."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

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
        raise EehwError(
            f"{what} {path}: cannot be read ({exc.__class__.__name__}); check that it is a readable text file"
        ) from None


class YamlReader:
    """Checks the values of one parsed YAML file (``what`` names its kind: "config", "board
    file"); ``example`` is a file to point at when a required key is missing."""

    def __init__(self, source: Path, what: str, example: Path | None = None) -> None:
        self.source, self.what, self.example = source, what, example

    def fail(self, key: str, problem: str) -> NoReturn:
        where = f"key '{key}' " if key else ""
        raise EehwError(f"{self.what} {self.source}: {where}{problem}")

    def mapping(self, value: Any, key: str, required, optional) -> dict:
        """A mapping with the ``required`` keys and no key outside ``required`` + ``optional``
        (``optional=None``: any other key; a missing optional mapping reads as empty)."""
        if value is None and not required and key:
            return {}
        if not isinstance(value, dict):
            if not key:
                self.fail("", f"the file must hold a mapping (key: value lines), got {kind(value)}")
            self.fail(key, f"must be a mapping of keys to values, got {kind(value)}")
        prefix = f"{key}." if key else ""
        if optional is not None:
            allowed = list(required) + list(optional)
            for name in value:
                if name not in allowed:
                    self.fail(
                        "",
                        f"unknown key '{prefix}{name}'; valid keys{' in ' + key if key else ''}: {', '.join(allowed)}",
                    )
        for name in required:
            if name not in value:
                hint = f"; add it (see {self.example} for an example)" if self.example else ""
                self.fail("", f"missing key '{prefix}{name}'{hint}")
        return value

    def integer(self, value: Any, key: str, minimum: int | None = None, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {kind(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(key, f"must be <= {maximum}, got {value}")
        return value

    def number(self, value: Any, key: str, minimum: float | None = None, maximum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, got {kind(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(key, f"must be <= {maximum}, got {value}")
        return float(value)

    def positive_int(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail(key, f"must be a positive integer, got {kind(value)}")
        return value

    def positive_number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            self.fail(key, f"must be a positive number, got {kind(value)}")
        return float(value)

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a non-empty string, got {kind(value)}")
        return value

    def int_list(self, value: Any, key: str, minimum: int | None = None) -> list[int]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"must be a list of integers, got {kind(value)}")
        return [self.integer(v, key, minimum=minimum) for v in value]

    def enum(self, enum: type[Enum], value: Any, key: str):
        try:
            return enum(value)
        except ValueError:
            self.fail(key, f"unknown value {kind(value)}; valid: {', '.join(e.value for e in enum)}")


def kind(value: Any) -> str:
    """A short, single-line rendering of a bad value for error messages."""
    if value is None:
        return "nothing (empty value)"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
