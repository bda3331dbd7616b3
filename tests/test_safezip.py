"""SafeZip: every refusal, folders allowed, and only the caller's exception type comes out."""

from __future__ import annotations

import io
import re
import struct
import zipfile
from pathlib import Path

import pytest

from rolecast.character.package import extract_zip, load_character, save_character
from rolecast.character.safezip import SafeZip, unsafe_name
from rolecast.errors import PackageError, ParseError


class Refused(Exception):
    """The exception these tests ask SafeZip for: nothing else may come out."""


def refuse(message: str) -> Refused:
    return Refused(message)


def make_zip(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, raw in files.items():
            zf.writestr(zipfile.ZipInfo(name), raw, compress_type=method)
    return buf.getvalue()


def patch_headers(data: bytes, central_offset: int, local_offset: int, fmt: str, value: int):
    """``data`` with a field of every local and central header of its (one) member set."""
    out = bytearray(data)
    struct.pack_into(fmt, out, out.find(b"PK\x03\x04") + local_offset, value)
    struct.pack_into(fmt, out, out.find(b"PK\x01\x02") + central_offset, value)
    return bytes(out)


def patch_eocd(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, out.rfind(b"PK\x05\x06") + offset, value)
    return bytes(out)


def refused(data: bytes | Path, match: str, read: str | None = None, **caps: int) -> None:
    with pytest.raises(Refused, match=match):
        with SafeZip(data, refuse, **caps) as zf:
            if read is not None:
                zf.read(read)


# ---------------------------------------------------------------- what is accepted


def test_reads_members_from_bytes_and_from_a_path(tmp_path: Path) -> None:
    files = {"top/": b"", "top/card.json": b"{}", "top/images/x.jpg": b"\xff\xd8jpeg"}
    data = make_zip(files)
    (tmp_path / "a.zip").write_bytes(data)
    for source in (data, tmp_path / "a.zip", str(tmp_path / "a.zip")):
        with SafeZip(source, refuse) as zf:
            assert zf.names == list(files)
            assert "top/images/x.jpg" in zf and "x.jpg" not in zf
            assert zf.read("top/images/x.jpg") == b"\xff\xd8jpeg"
            assert zf.read("top/") == b""
            assert zf.read_total == 6


def test_a_large_zip_from_a_path_is_checked_from_its_tail(tmp_path: Path) -> None:
    big = bytes(range(256)) * 1000  # 256 KB, stored: the end record is far from the start
    data = make_zip({"a.bin": big, "b.txt": b"x"}, zipfile.ZIP_STORED)
    (tmp_path / "big.zip").write_bytes(data)
    with SafeZip(tmp_path / "big.zip", refuse) as zf:
        assert zf.read("a.bin") == big
    at = data.rfind(b"PK\x05\x06")
    (tmp_path / "z64.zip").write_bytes(data[:at] + b"PK\x06\x07" + bytes(16) + data[at:])
    refused(tmp_path / "z64.zip", "ZIP64 archives are not supported")


def test_stored_members_are_read_too() -> None:
    with SafeZip(make_zip({"a.txt": b"hello"}, zipfile.ZIP_STORED), refuse) as zf:
        assert zf.read("a.txt") == b"hello"


def test_an_unknown_member_is_the_callers_key_error() -> None:
    with SafeZip(make_zip({"a.txt": b"x"}), refuse) as zf, pytest.raises(KeyError):
        zf.read("b.txt")


@pytest.mark.parametrize(
    "name", ["images/x.jpg", "a/b/c.png", "top/", "x..y.txt", "...", "ab:c.txt", "名字/图.png"]
)
def test_safe_names(name: str) -> None:
    assert not unsafe_name(name)


@pytest.mark.parametrize(
    "name", ["../x", "a/../../x", "a/..", "/etc/passwd", "a\\b", "..\\x", "C:/x", "c:x", "a\0b"]
)
def test_unsafe_names(name: str) -> None:
    assert unsafe_name(name)


def test_package_zip_with_a_top_folder_and_folder_entries(tmp_path: Path, character) -> None:
    folder = save_character(character, tmp_path / "xm")
    (folder / "images" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xm/", b"")
        zf.writestr("xm/images/", b"")
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f"xm/{f.relative_to(folder).as_posix()}")
    z = tmp_path / "xm.zip"
    z.write_bytes(buf.getvalue())
    assert load_character(z).id == "xm"
    out = extract_zip(z, tmp_path / "copy")
    assert (out / "images" / "a.jpg").read_bytes() == b"\xff\xd8jpeg"
    assert load_character(out).scenes == character.scenes


# ---------------------------------------------------------------- each refusal


@pytest.mark.parametrize(
    "name", ["../evil.txt", "/abs/evil.txt", "images/../../evil.txt", "a\\b.txt", "C:/x.txt"]
)
def test_unsafe_member_name_refused(name: str) -> None:
    refused(make_zip({"ok.txt": b"x", name: b"x"}), re.escape(f"unsafe path in zip: {name!r}"))


def test_nul_in_a_member_name_refused() -> None:
    data = make_zip({"aXb.txt": b"x"}).replace(b"aXb.txt", b"a\0b.txt")
    refused(data, r"unsafe path in zip: 'a\\x00b.txt'")


def test_duplicate_member_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", b"1")
        with pytest.warns(UserWarning):
            zf.writestr("a.txt", b"2")
    refused(buf.getvalue(), "zip holds 'a.txt' twice")


def test_not_a_zip_refused(tmp_path: Path) -> None:
    refused(b"PK\x03\x04" + bytes(40), "not a valid zip: no end of central directory")
    refused(b"", "no end of central directory")
    refused(make_zip({"a.txt": b"x"})[:-30], "not a valid zip")
    refused(tmp_path / "missing.zip", "cannot read zip")
    refused(tmp_path, "cannot read zip")  # a folder


def test_zip64_refused() -> None:
    data = make_zip({"a.txt": b"x"})
    refused(patch_eocd(data, 10, "<H", 0xFFFF), "ZIP64 archives are not supported")
    refused(patch_eocd(data, 16, "<I", 0xFFFFFFFF), "ZIP64 archives are not supported")
    at = data.rfind(b"PK\x05\x06")
    locator = b"PK\x06\x07" + bytes(16)
    refused(data[:at] + locator + data[at:], "ZIP64 archives are not supported")


def test_member_count_refused_from_the_directory_record_and_from_the_directory() -> None:
    data = make_zip({f"f{i}": b"" for i in range(4)})
    refused(data, "zip has 4 members, more than the 3 allowed", max_members=3)
    lying = patch_eocd(patch_eocd(data, 8, "<H", 1), 10, "<H", 1)  # the record says 1
    refused(lying, "zip has 4 members, more than the 3 allowed", max_members=3)


def test_central_directory_size_refused() -> None:
    data = make_zip({"a.txt": b"x"})
    size = len(data) - data.find(b"PK\x01\x02") - 22  # one header, before the end record
    refused(data, f"central directory is {size} bytes, over the 40 byte limit", max_central_dir=40)


def test_declared_member_size_refused_before_reading() -> None:
    data = make_zip({"card.json": b"{}", "big.bin": bytes(5000)})
    refused(
        data, "'big.bin' is too large: it unpacks to 5000 bytes, over the 4096", max_member=4096
    )


def test_declared_total_refused_before_reading() -> None:
    data = make_zip({"a.bin": bytes(600), "b.bin": bytes(600)})
    refused(data, "zip unpacks to more than the 1000 byte limit", max_total=1000)


def test_bytes_actually_read_count_towards_the_total() -> None:
    with SafeZip(make_zip({"a.bin": bytes(600)}), refuse, max_total=1000) as zf:
        zf.read("a.bin")
        with pytest.raises(Refused, match="more than the 1000 byte limit"):
            zf.read("a.bin")  # read again: 1200 bytes really read


def test_member_lying_about_its_size_is_never_read_past_it() -> None:
    data = make_zip({"a.bin": bytes(5_000_000)})
    liar = patch_headers(data, 24, 22, "<I", 100)  # uncompressed size: 100
    refused(liar, "zip member 'a.bin' cannot be read: Bad CRC", read="a.bin")


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_only_stored_and_deflated_members_are_read(method: int) -> None:
    data = make_zip({"a.txt": b"hello"}, method)
    with SafeZip(data, refuse) as zf:  # opening is fine: reading is refused
        with pytest.raises(Refused, match=f"compression method {method}; only stored"):
            zf.read("a.txt")


def test_encrypted_member_refused() -> None:
    data = patch_headers(make_zip({"a.txt": b"hello"}), 8, 6, "<H", 0x1)
    refused(data, "zip member 'a.txt' is encrypted", read="a.txt")


def test_corrupt_member_data_refused() -> None:
    data = bytearray(make_zip({"a.txt": b"hello " * 100}))
    start = data.find(b"PK\x03\x04") + 30 + len("a.txt")
    data[start : start + 8] = b"\xff" * 8  # the deflate stream, broken
    refused(bytes(data), "zip member 'a.txt' cannot be read", read="a.txt")


# ---------------------------------------------------------------- the caller's exception


def test_the_callers_exception_type_comes_out() -> None:
    data = make_zip({"../x": b"x"})
    with pytest.raises(ParseError, match=r"^card.charx: unsafe path") as err:
        SafeZip(data, lambda m: ParseError(m, "card.charx"))
    assert err.value.path == "card.charx"
    with pytest.raises(PackageError, match="^x.zip: unsafe path"):
        SafeZip(data, lambda m: PackageError(f"x.zip: {m}"))


def test_a_callers_exception_that_is_a_value_error_is_not_wrapped_again() -> None:
    class Bad(ValueError):
        pass

    with pytest.raises(Bad, match="^ZIP64 archives"):
        SafeZip(patch_eocd(make_zip({"a": b""}), 10, "<H", 0xFFFF), Bad)
    with SafeZip(make_zip({"a": b""}, zipfile.ZIP_BZIP2), Bad) as zf:
        with pytest.raises(Bad, match="^zip member 'a' uses"):
            zf.read("a")


def test_many_damaged_zips_give_only_the_callers_exception() -> None:
    """Truncations and byte flips of a valid zip: each reads or raises Refused, nothing else."""
    data = make_zip({"card.json": b'{"name": "x"}' * 20, "images/a.png": bytes(300)})
    for i in range(0, len(data), 3):
        for damaged in (data[:i], data[:i] + bytes([data[i] ^ 0x55]) + data[i + 1 :]):
            try:
                with SafeZip(damaged, refuse) as zf:
                    for name in zf.names:
                        zf.read(name)
            except Refused:
                pass
