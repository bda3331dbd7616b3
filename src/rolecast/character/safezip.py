"""Untrusted zip files, opened with every safety check in one place.

:class:`SafeZip` opens a zip held in bytes or at a path. Before ``zipfile`` parses anything
it refuses ZIP64 archives, a central directory over ``max_central_dir`` bytes and more than
``max_members`` members; once the directory is read it refuses

- unsafe member names: absolute, with a ``..`` part, a backslash, a drive letter or a NUL
  (folders inside, such as ``images/x.jpg`` or one top folder, are fine);
- the same name twice;
- a member declaring more than ``max_member`` bytes, or all of them more than ``max_total``.

:meth:`SafeZip.read` reads only stored and deflated, unencrypted members, and never more
bytes than a member declares nor than the caps allow, counting what was really read. Before
it inflates anything it refuses a member that would grow more than ``max_ratio`` times its
compressed size, and the same for all members read so far together (a zip bomb: 0.5 MB that
unpacks to 480 MB stays within the size caps); below :data:`RATIO_FLOOR` bytes, where a high
ratio is harmless, none of this applies. The ratio is checked when a member is read, not
when the zip is opened: a member never read (the preallocated index of a ChatHaruhi role
zip compresses 1000:1) costs nothing.

Every problem, whether a check above or anything the standard library raises on a damaged
or hostile zip (``BadZipFile``, ``zlib.error``, ``EOFError``, ``OSError``, ``ValueError``,
``NotImplementedError``, ``RuntimeError`` for an encrypted member...), comes out as the one
exception the caller's ``error`` factory makes from a message, e.g.
``lambda msg: ParseError(msg, path)``. Nothing here is written to disk.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

ErrorFactory = Callable[[str], Exception]

MAX_MEMBERS = 10_000  # members in one zip
MAX_CENTRAL_DIR = 4 * 1024 * 1024  # bytes of central directory
MAX_MEMBER = 64 * 1024 * 1024  # one member, uncompressed
MAX_TOTAL = 512 * 1024 * 1024  # all members together, uncompressed
MAX_RATIO = 100  # uncompressed / compressed size: text ~3-10, images ~1, deflate at most ~1032
RATIO_FLOOR = 1024 * 1024  # uncompressed bytes (a member, or all read) where ratios start to count

READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)

# what the standard library can raise while it reads a damaged or hostile zip
STDLIB_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,  # an unsupported compression method
    RuntimeError,  # an encrypted member
    struct.error,
    KeyError,
    IndexError,
)

_EOCD = b"PK\x05\x06"  # end of central directory record
_ZIP64_LOCATOR = b"PK\x06\x07"
_SEARCH = 22 + 65_535  # the record and the longest comment after it
_TAIL = _SEARCH + 20  # and room for a ZIP64 locator just before it
_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_name(name: str) -> bool:
    """True for a path that could land outside the folder it is unpacked into: absolute,
    with a ``..`` part, a backslash, a drive letter or a NUL."""
    return (
        name.startswith("/")
        or "\\" in name
        or "\0" in name
        or _DRIVE.match(name) is not None
        or ".." in name.split("/")
    )


class SafeZip:
    """A checked, read-only zip whose members are read with size caps.

    ``source`` is the zip's bytes or its path; ``error`` makes the exception raised for
    every problem from its message. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        source: bytes | bytearray | memoryview | str | Path,
        error: ErrorFactory,
        *,
        max_members: int = MAX_MEMBERS,
        max_central_dir: int = MAX_CENTRAL_DIR,
        max_member: int = MAX_MEMBER,
        max_total: int = MAX_TOTAL,
        max_ratio: float = MAX_RATIO,
    ):
        self._error = error
        self.max_member, self.max_total, self.max_ratio = max_member, max_total, max_ratio
        self.read_total = 0  # bytes really read so far, all members together
        self._inflated = self._compressed = 0  # declared sizes of the members read so far
        self._members: dict[str, zipfile.ZipInfo] = {}
        try:
            if isinstance(source, (str, Path)):
                with open(source, "rb") as f:
                    size = f.seek(0, io.SEEK_END)
                    f.seek(max(0, size - _TAIL))
                    tail = f.read()
                file: str | Path | io.BytesIO = source
            else:
                data = bytes(source)
                tail, file = data[-_TAIL:], io.BytesIO(data)
        except STDLIB_ERRORS as exc:
            raise error(f"cannot read zip: {exc}") from None
        self._check_directory(tail, max_members, max_central_dir)
        try:
            self._zf = zipfile.ZipFile(file)
        except STDLIB_ERRORS as exc:
            raise error(f"not a valid zip: {exc}") from None
        try:
            self._check_members(self._zf.infolist(), max_members)
        except BaseException:
            self._zf.close()
            raise

    def _check_directory(self, tail: bytes, max_members: int, max_central_dir: int) -> None:
        """Refuse ZIP64 and oversized central directories before ``zipfile`` parses them."""
        eocd = tail.rfind(_EOCD, max(0, len(tail) - _SEARCH))
        if eocd < 0 or eocd + 22 > len(tail):
            raise self._error("not a valid zip: no end of central directory")
        entries, cd_size, cd_offset = struct.unpack("<HII", tail[eocd + 10 : eocd + 20])
        if (
            entries == 0xFFFF
            or cd_size == 0xFFFFFFFF
            or cd_offset == 0xFFFFFFFF
            or (eocd >= 20 and tail[eocd - 20 : eocd - 16] == _ZIP64_LOCATOR)
        ):
            raise self._error("ZIP64 archives are not supported")
        if entries > max_members:
            raise self._error(f"zip has {entries} members, more than the {max_members} allowed")
        if cd_size > max_central_dir:
            raise self._error(
                f"zip central directory is {cd_size} bytes, over the {max_central_dir} byte limit"
            )

    def _check_members(self, infos: list[zipfile.ZipInfo], max_members: int) -> None:
        if len(infos) > max_members:
            raise self._error(f"zip has {len(infos)} members, more than the {max_members} allowed")
        declared = 0
        for info in infos:
            for name in dict.fromkeys((info.orig_filename, info.filename)):
                if unsafe_name(name):
                    raise self._error(f"unsafe path in zip: {name!r}")
            if info.filename in self._members:
                raise self._error(f"zip holds {info.filename!r} twice")
            if info.file_size > self.max_member:
                raise self._error(
                    f"zip member {info.filename!r} is too large: it unpacks to "
                    f"{info.file_size} bytes, over the {self.max_member} byte limit"
                )
            declared += info.file_size
            if declared > self.max_total:
                raise self._error(f"zip unpacks to more than the {self.max_total} byte limit")
            self._members[info.filename] = info

    # ------------------------------------------------------------ the members

    @property
    def names(self) -> list[str]:
        """Member names in archive order (folders end with ``/``)."""
        return list(self._members)

    @property
    def infos(self) -> list[zipfile.ZipInfo]:
        return list(self._members.values())

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def read(self, name: str) -> bytes:
        """A member's bytes, never more than it declares nor than the caps allow.

        A name the zip does not hold is a ``KeyError`` (the caller's mistake, not the zip's).
        """
        info = self._members[name]
        if info.compress_type not in READABLE_METHODS:
            raise self._error(
                f"zip member {name!r} uses compression method {info.compress_type}; "
                "only stored and deflated members are read"
            )
        if info.flag_bits & 0x1:
            raise self._error(f"zip member {name!r} is encrypted")
        self._check_ratio(info)
        cap = min(info.file_size, self.max_member)
        try:
            with self._zf.open(info) as member:
                out = member.read(cap + 1)
        except STDLIB_ERRORS as exc:
            raise self._error(f"zip member {name!r} cannot be read: {exc}") from None
        if len(out) > cap:
            raise self._error(f"zip member {name!r} unpacks to more than it declares")
        self.read_total += len(out)
        if self.read_total > self.max_total:
            raise self._error(f"zip unpacks to more than the {self.max_total} byte limit")
        return out

    def _check_ratio(self, info: zipfile.ZipInfo) -> None:
        """Refuse, before inflating it, a member that grows more than ``max_ratio`` times,
        or one that brings all members read so far over that ratio together."""
        size, packed = info.file_size, info.compress_size
        if size > RATIO_FLOOR and size > self.max_ratio * packed:
            raise self._error(
                f"zip member {info.filename!r} would unpack to {size} bytes from {packed} "
                f"compressed, {size / max(packed, 1):.0f} times its size, over the "
                f"{self.max_ratio:g}:1 limit: refused as a zip bomb"
            )
        inflated, compressed = self._inflated + size, self._compressed + packed
        if inflated > RATIO_FLOOR and inflated > self.max_ratio * compressed:
            raise self._error(
                f"zip members would unpack to {inflated} bytes from {compressed} compressed, "
                f"{inflated / max(compressed, 1):.0f} times their size, over the "
                f"{self.max_ratio:g}:1 limit: refused as a zip bomb"
            )
        self._inflated, self._compressed = inflated, compressed

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        self._zf.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
