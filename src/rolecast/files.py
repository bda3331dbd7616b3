"""Writing files so that nothing is lost: one atomic write for the whole package."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError


def write_atomic(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` atomically: into a temporary sibling, synced
    to disk, then renamed into place, so a reader never sees half a file and a failed write
    leaves the old one. Missing folders are made; ``mode`` is the file's permissions. An
    unwritable place is an :class:`InputError` naming the path."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder, not a file name")
    for folder in path.parents:  # the nearest part of the path that exists must be a folder
        if folder.exists():
            if not folder.is_dir():
                raise InputError(f"cannot write {path}: {folder} is a file, not a folder")
            break
    blob = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())  # on disk before it takes the name
        os.chmod(tmp, mode)  # mkstemp makes it private
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
