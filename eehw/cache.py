"""What every cache under ``cache_dir()`` shares: keys that include the code that made an entry,
writes that a Ctrl-C cannot leave half-done under the real name, and reads that notice a
truncated or corrupt entry, delete it with one line and let the caller rebuild it.

A checked entry is the payload under its real name plus a ``<name>.sha256`` sidecar (JSON:
digest and size) written after it; an entry without its sidecar (a run interrupted between
the two writes) or whose bytes do not match it is never reused.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import json
import os
import secrets
import sys
import sysconfig
import zipfile
from collections.abc import Callable, Iterable
from importlib.machinery import ModuleSpec, PathFinder
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

from eehw.errors import EehwError

_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------
# Keys


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (read in chunks: dataset files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def package_version(name: str) -> str:
    """Installed version of a distribution, read without importing it."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def code_hash(*sources: ModuleType | str | Path) -> str:
    """Hash of the source files that produce a cache entry, so editing them changes its key.

    Each source is a module, a dotted module name (located with find_spec, not imported, so a
    key costs no heavy import), or a file or folder path (a folder: every file below it except
    __pycache__). Names and bytes are hashed, not modification times, so an edit that keeps
    the size and lands within the file system's timestamp resolution still counts.
    """
    h = hashlib.sha256()
    for source in sources:
        for name, path in _source_files(source):
            h.update(name.encode() + b"\0" + file_digest(path).encode())
    return h.hexdigest()[:16]


def _source_files(source: ModuleType | str | Path) -> list[tuple[str, Path]]:
    if isinstance(source, ModuleType):
        return [(source.__name__, Path(source.__file__))]
    if isinstance(source, str) and "/" not in source and os.sep not in source:
        spec = importlib.util.find_spec(source)
        if spec is None or not spec.origin or not Path(spec.origin).is_file():
            raise EehwError(f"cache: module {source} has no source file to hash")
        return [(source, Path(spec.origin))]
    path = Path(source)
    if path.is_file():
        return [(path.name, path)]
    if path.is_dir():
        return [
            (str(p.relative_to(path)), p)
            for p in sorted(path.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        ]
    raise EehwError(f"cache: {path} does not exist, so it cannot be part of a cache key")


def user_modules(module: str, roots: Iterable[str | Path] = ()) -> dict[str, Path]:
    """The user's module ``module`` and, recursively, the user's own modules it imports: name -> file.

    Found statically, not by importing: the module's file is located with PathFinder on
    ``roots`` (the config's folder) then sys.path, its ``import`` statements are read with ast
    (anywhere in the file, functions included; relative imports resolved against its
    package) and followed. A module counts as the user's when its file lies outside the
    standard library, site-packages / dist-packages and eehw itself; the named module always
    counts. Dynamic imports (importlib.import_module of a string, exec) are not seen.
    """
    search = [str(Path(r).resolve()) for r in roots] + [p or os.getcwd() for p in sys.path]
    others = _not_users()
    found: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        spec = _find_spec(name, search)
        if spec is None or not spec.origin or not Path(spec.origin).is_file():
            continue
        origin = Path(spec.origin).resolve()
        if name != module and not _is_users(origin, others):
            continue
        found[name] = origin
        if "." in name:
            todo.append(name.rpartition(".")[0])  # importing pkg.mod runs pkg/__init__.py first
        if origin.suffix == ".py":
            is_package = origin.name == "__init__.py"
            todo.extend(_imports(origin, name if is_package else name.rpartition(".")[0]))
    return found


def sources_hash(files: dict[str, Path]) -> str:
    """Hash of named source files (``user_modules``' result): names and bytes."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + file_digest(files[name]).encode())
    return h.hexdigest()[:16]


def _find_spec(name: str, search: list[str]) -> ModuleSpec | None:
    """A module's spec on ``search`` without importing it (or any parent package)."""
    spec = None
    parts = name.split(".")
    for i in range(len(parts)):
        locations = search if spec is None else spec.submodule_search_locations
        if not locations:
            return None
        try:
            spec = PathFinder.find_spec(".".join(parts[: i + 1]), list(locations))
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
    return spec


def _imports(path: Path, package: str) -> list[str]:
    """Modules a source file imports; ``from a import b`` also names ``a.b`` (it may be a module)."""
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (SyntaxError, ValueError):
        return []  # importing it will say what is wrong
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x: against the package, one level up per extra dot
                parts = package.split(".") if package else []
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            if base:
                names.append(base)
            names += [f"{base}.{alias.name}" if base else alias.name for alias in node.names if alias.name != "*"]
    return names


def _not_users() -> list[Path]:
    """Folders whose modules are not the user's: the standard library, installed packages, eehw."""
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.add(str(Path(__file__).resolve().parent))  # eehw: its code is in the keys by code_hash
    return [Path(r).resolve() for r in roots]


def _is_users(path: Path, others: list[Path]) -> bool:
    if {"site-packages", "dist-packages"} & set(path.parts):
        return False
    return not any(path.is_relative_to(root) for root in others)


# ---------------------------------------------------------------------------------------------
# Writes


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write a file through ``write(f)`` to a temporary file in the same folder, fsync it and
    rename it over ``path``: an interrupt (Ctrl-C, a crash) leaves the old file or none under
    the real name, never half of a new one, and removes the temporary file when it can."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# ---------------------------------------------------------------------------------------------
# Checked entries


def digest_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def store_checked(path: str | Path, data: bytes) -> None:
    """A cache entry with its digest: the payload first, then the sidecar that vouches for it."""
    digest_path(path).unlink(missing_ok=True)  # the old sidecar must not vouch for a half-replaced entry
    atomic_write_bytes(path, data)
    atomic_write_text(digest_path(path), json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))


def read_checked(path: str | Path, what: str, redo: str) -> bytes | None:
    """The payload of a checked entry; None when there is none or it fails its digest (then it
    is deleted with a one-line notice, and the caller rebuilds it)."""
    path = Path(path)
    if not path.exists():
        digest_path(path).unlink(missing_ok=True)
        return None
    try:
        meta = json.loads(digest_path(path).read_text())
        size, digest = int(meta["bytes"]), str(meta["sha256"])
    except FileNotFoundError:
        return discard(path, what, "was corrupt (no digest: its write was interrupted)", redo)
    except (OSError, ValueError, KeyError, TypeError):
        return discard(path, what, "was corrupt (unreadable digest)", redo)
    data = path.read_bytes()
    if len(data) != size:
        return discard(path, what, f"was corrupt (truncated: {len(data)} of {size} bytes)", redo)
    if hashlib.sha256(data).hexdigest() != digest:
        return discard(path, what, "was corrupt (content does not match its digest)", redo)
    return data


def discard(path: str | Path, what: str, reason: str, redo: str) -> None:
    """Delete a cache entry that must not be reused and say so in one line:
    ``cache: checkpoint X was corrupt (...), retraining``."""
    path = Path(path)
    print(f"cache: {what} {path} {reason}, {redo}", file=sys.stderr, flush=True)
    path.unlink(missing_ok=True)
    digest_path(path).unlink(missing_ok=True)
    return None


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save as a checked entry (read back with ``checked_load``)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    store_checked(path, buffer.getvalue())


def checked_load(path: str | Path, what: str, redo: str) -> Any | None:
    """torch.load of a checked entry; None when it is missing or corrupt (deleted, one line)."""
    import torch

    data = read_checked(path, what, redo)
    if data is None:
        return None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling raises anything; the digest matched, so the writer was wrong
        return discard(path, what, f"was corrupt (torch.load: {type(exc).__name__})", redo)


def save_arrays(path: str | Path, **arrays: Any) -> None:
    """numpy arrays as one checked ``.npz`` entry (read back with ``load_arrays``)."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    store_checked(path, buffer.getvalue())


def load_arrays(path: str | Path, what: str, redo: str, names: Iterable[str]) -> dict | None:
    """The named arrays of a checked ``.npz`` entry; None when missing or corrupt (deleted, one line)."""
    import numpy as np

    data = read_checked(path, what, redo)
    if data is None:
        return None
    try:
        with np.load(io.BytesIO(data)) as raw:
            return {name: raw[name] for name in names}
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        return discard(path, what, f"was corrupt ({type(exc).__name__})", redo)


def load_json(path: str | Path, what: str, redo: str, keys: Iterable[str] = ()) -> dict | None:
    """A JSON cache entry holding ``keys``; None when missing, unreadable or incomplete (deleted, one line)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return discard(path, what, f"was corrupt ({type(exc).__name__})", redo)
    missing = [k for k in keys if not isinstance(value, dict) or k not in value]
    if not isinstance(value, dict) or missing:
        return discard(path, what, f"was corrupt (no {missing[0] if missing else 'mapping'})", redo)
    return value
