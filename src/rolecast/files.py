"""Writing files and folders so that nothing is lost.

:func:`write_atomic` writes one file atomically. A folder (a character package, a built
index) is written into a temporary sibling (:func:`staging_dir`) and swapped into place
(:func:`replace_dir`). The swap is two renames: the old folder steps aside as
``.<name>.old-<pid>``, then the new one takes the name. A process killed between the two
leaves the character missing and its old folder hidden; :func:`recover_dirs`, run whenever
the store is read and before every new write, puts such a folder back and removes temporary
folders that a dead process left behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

log = logging.getLogger(__name__)
STALE_AFTER = 10 * 60  # seconds: a temporary folder this old, whose process is gone, is left over
_OLD = re.compile(r"^\.(?P<name>.+)\.old-(?P<pid>\d+)$")
_TMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?:(?P<pid>\d+)-)?[^/]*$")  # older ones hold no pid


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes | str | Iterable[bytes],
    mode: int = 0o644,
    sync: bool = True,
) -> Path:
    """Write ``data`` (str as UTF-8; or byte chunks one at a time, for a file too large to
    hold as one string) to ``path`` atomically: into a temporary sibling, synced
    to disk, then renamed into place, so a reader never sees half a file and a failed write
    leaves the old one. Missing folders are made; ``mode`` is the file's permissions. An
    unwritable place is an :class:`InputError` naming the path. ``sync=False`` skips the
    sync, for files whose reader takes a damaged one for a missing one (a cache entry):
    atomic still, but a power cut may leave the new name on unwritten data."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder, not a file name")
    for folder in path.parents:  # the nearest part of the path that exists must be a folder
        if folder.exists():
            if not folder.is_dir():
                raise InputError(f"cannot write {path}: {folder} is a file, not a folder")
            break
    chunks = (
        [data.encode("utf-8")]
        if isinstance(data, str)
        else ([data] if isinstance(data, bytes) else data)
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            if sync:
                os.fsync(f.fileno())  # on disk before it takes the name
        os.chmod(tmp, mode)  # mkstemp makes it private
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# ---------------------------------------------------------------- folders


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` may still be running (True when that cannot be told)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would send Ctrl-C there: assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


@contextmanager
def staging_dir(dest: Path) -> Iterator[Path]:
    """A temporary sibling of ``dest``, named after it and this process; removed unless the
    body moves it away. Leftovers of interrupted writes beside it are dealt with first."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover_dirs(dest.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=dest.parent))
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(new: Path, dest: Path) -> None:
    """Put folder ``new`` at ``dest``, replacing what is there with two renames; a process
    killed between them is recovered from by :func:`recover_dirs`."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_dirs(base: Path, now: float | None = None) -> list[str]:
    """Finish what interrupted folder swaps in ``base`` left, and say what was done.

    ``.<name>.old-<pid>`` of a process that is gone goes back to ``<name>`` when nothing took
    its place (the process died between the two renames), else it is removed. Temporary
    folders (``.<name>.tmp-<pid>-...``) older than :data:`STALE_AFTER` whose process is gone
    are removed. Nothing of a running process is touched; a problem is logged, not raised.
    """
    done: list[str] = []
    try:
        entries = sorted(base.iterdir()) if base.is_dir() else []
    except OSError as exc:
        log.warning("cannot look for interrupted writes in %s: %s", base, exc)
        return done
    now = time.time() if now is None else now
    for entry in entries:
        try:
            if (m := _OLD.match(entry.name)) and not pid_alive(int(m["pid"])):
                dest = entry.with_name(m["name"])
                if dest.exists() or dest.is_symlink():
                    shutil.rmtree(entry)
                    done.append(f"removed {entry.name}, left by an interrupted write")
                else:
                    os.replace(entry, dest)
                    done.append(
                        f"restored {dest.name}, hidden as {entry.name} by a write "
                        "that was interrupted"
                    )
                    log.warning("%s: %s", base, done[-1])
            elif (m := _TMP.match(entry.name)) and entry.is_dir() and not entry.is_symlink():
                pid = m["pid"]
                if (pid is None or not pid_alive(int(pid))) and (
                    now - entry.stat().st_mtime > STALE_AFTER
                ):
                    shutil.rmtree(entry)
                    done.append(f"removed {entry.name}, left by an interrupted write")
        except FileNotFoundError:  # another process cleaned it up first
            continue
        except OSError as exc:
            log.warning("cannot clean up %s: %s", entry, exc)
    return done


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's content, read in 4 MB blocks (model files are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
    return h.hexdigest()
