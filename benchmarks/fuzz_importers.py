"""Fuzz every importer with mutated valid inputs: each must return or raise its one error class.

    python benchmarks/fuzz_importers.py [--n 2000] [--seed 0] [--only card-png,role-zip]

Seeds are valid files of every format, built here from an invented character. Each input is a
seed changed by a few random mutations (bit flips, cut, repeated or inserted slices, boundary
bytes, zip members rewritten). An importer may return a character or raise ``ParseError``
(``PackageError`` too for rolecast package zips); anything else is a crash, printed with the
input's hex and counted. Exit status 1 when any crash was seen.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from rolecast.character.model import Character, Line, LoreEntry, Scene
from rolecast.errors import PackageError, ParseError

INTERESTING = [
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b'"',
    b"{",
    b"]",
]


def sample_character() -> Character:
    scenes = [
        Scene(
            f"s{i}",
            f"夜{i}",
            (
                Line("旁白", "桥头起雾。"),
                Line("阿青", "还有面吗？"),
                Line("小满", f"最后一碗，{i}文。"),
            ),
        )
        for i in range(4)
    ]
    return Character(
        id="fuzz",
        name="小满",
        persona="你是小满。",
        scenes=scenes,
        aliases=["满老板"],
        user_role="阿青",
        greetings=["来碗面？", "雾大，坐。"],
        lore=[LoreEntry(("青雾渡",), "渡口终年有雾。", "渡口")],
    )


def seeds() -> dict[str, list[bytes]]:
    """Valid inputs per target."""
    from rolecast.character.package import save_character, write_zip
    from rolecast.formats import chatharuhi

    c = sample_character()
    out: dict[str, list[bytes]] = {}
    jsonl = chatharuhi.export_role_jsonl(c, embed=lambda texts: [[0.5, 1.0]] * len(texts))
    out["role-jsonl"] = [jsonl]
    out["role-zip"] = [_role_zip(chatharuhi, c)]
    try:
        from rolecast.formats import cards

        out["card-json"] = [cards.export_card(c, None, "json")]
        out["card-png"] = [cards.export_card(c, None, "png")]
        out["charx"] = [cards.export_card(c, None, "charx")]
    except ImportError:  # pragma: no cover - cards not built
        pass
    with tempfile.TemporaryDirectory() as tmp:
        pkg = save_character(c, Path(tmp) / "fuzz")
        out["package-zip"] = [write_zip(pkg, Path(tmp) / "fuzz.zip").read_bytes()]
    return out


def _role_zip(chatharuhi, c: Character) -> bytes:  # type: ignore[no-untyped-def]
    import sqlite3

    from rolecast.character.dialogue import format_dialogue

    con = sqlite3.connect(":memory:")
    con.executescript(
        "CREATE TABLE embeddings (id INTEGER PRIMARY KEY, segment_id TEXT, embedding_id TEXT,"
        " seq_id BLOB); CREATE TABLE embedding_metadata (id INTEGER, key TEXT, string_value"
        " TEXT, PRIMARY KEY (id, key));"
    )
    for i, s in enumerate(c.scenes, start=1):
        doc = format_dialogue(s.lines)
        con.execute("INSERT INTO embeddings VALUES (?, 's', ?, x'00')", (i, f"{i}_{doc}"))
        con.execute("INSERT INTO embedding_metadata VALUES (?, 'chroma:document', ?)", (i, doc))
    con.commit()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("content/fuzz/chroma.sqlite3", con.serialize())
        zf.writestr("content/system_prompt.txt", c.persona)
    return buf.getvalue()


def targets() -> dict[str, tuple[Callable[[bytes], object], tuple[type[BaseException], ...]]]:
    from rolecast.formats import chatharuhi

    def package_zip(data: bytes) -> object:
        from rolecast.character.package import load_character

        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "x.zip"
            f.write_bytes(data)
            if not zipfile.is_zipfile(f):
                raise PackageError("not a zip")
            return load_character(f)

    out: dict[str, tuple[Callable[[bytes], object], tuple[type[BaseException], ...]]] = {
        "role-jsonl": (chatharuhi.import_role_jsonl, (ParseError,)),
        "role-zip": (chatharuhi.import_role_zip, (ParseError,)),
        "package-zip": (package_zip, (ParseError, PackageError)),
    }
    try:
        from rolecast.formats import cards

        def card(data: bytes) -> object:
            return cards.import_card(data, "fuzz.card")

        for name in ("card-json", "card-png", "charx"):
            out[name] = (card, (ParseError,))
    except ImportError:  # pragma: no cover
        pass
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if not b:
            b.extend(rng.choice(INTERESTING))
            continue
        i = rng.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            del b[rng.randrange(len(b)) :]  # truncation
        elif op == 2:
            j = min(len(b), i + rng.randint(1, 64))
            b[i:i] = b[i:j] * rng.randint(2, 8)  # a repeated slice
        elif op == 3:
            b[i:i] = rng.choice(INTERESTING)
        elif op == 4:
            j = min(len(b), i + rng.randint(1, 16))
            del b[i:j]
        elif op == 5:
            b[i : i + 4] = rng.choice(INTERESTING)[:4].ljust(4, b"\x00")
        else:
            b[i] = rng.randrange(256)
    if data.startswith(b"PK") and rng.random() < 0.3:
        return _mutate_zip_member(data, rng)
    if data.startswith(b"\x89PNG") and rng.random() < 0.5:
        return _mutate_png_chunk(data, rng)
    return bytes(b)


def _mutate_png_chunk(data: bytes, rng: random.Random) -> bytes:
    """Mutate the body of one chunk (often the card's text chunk, base64 decoded and mutated)
    and write a correct CRC, so the input gets past the checksum to the parsers behind it."""
    import base64
    import binascii
    import struct
    import zlib

    chunks, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append([data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]])
        pos += 12 + length
    texts = [c for c in chunks if c[0] == b"tEXt"]
    target = rng.choice(texts if texts and rng.random() < 0.8 else chunks)
    body = target[1]
    if target[0] == b"tEXt" and b"\x00" in body:
        key, _, value = body.partition(b"\x00")
        try:
            inner = base64.b64decode(value, validate=True)
            value = base64.b64encode(mutate(inner, rng))
        except (binascii.Error, ValueError):
            value = mutate(value, rng)
        target[1] = key + b"\x00" + value
    else:
        target[1] = mutate(body, rng)
    out = bytearray(data[:8])
    for ctype, body in chunks:
        out += struct.pack(">I", len(body)) + ctype + body
        out += struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)
    return bytes(out)


def _mutate_zip_member(data: bytes, rng: random.Random) -> bytes:
    """Rewrite one member of a valid zip with mutated contents (reaches the parsers inside)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = {i.filename: zf.read(i) for i in zf.infolist()}
    except (zipfile.BadZipFile, ValueError, OSError):
        return data
    name = rng.choice(sorted(members))
    members[name] = mutate(members[name], rng) if members[name] else b"\x00"
    if rng.random() < 0.2:
        members[rng.choice(["../evil.txt", "/abs.txt", "a\\b.txt", "content/../../x"])] = b"x"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, d in members.items():
            zf.writestr(n, d)
    return buf.getvalue()


def run(
    n: int, seed: int, only: set[str] | None = None, verbose: bool = True
) -> dict[str, dict[str, int]]:
    rng = random.Random(seed)
    all_seeds, all_targets = seeds(), targets()
    report: dict[str, dict[str, int]] = {}
    kinds: Counter[str] = Counter()
    for name, (fn, allowed) in all_targets.items():
        if only and name not in only:
            continue
        stats = {"inputs": 0, "accepted": 0, "refused": 0, "crashed": 0}
        for seed_bytes in all_seeds[name]:
            fn(seed_bytes)  # the seed itself must import
        for _ in range(n):
            data = mutate(rng.choice(all_seeds[name]), rng)
            stats["inputs"] += 1
            try:
                fn(data)
                stats["accepted"] += 1
            except allowed:
                stats["refused"] += 1
            except Exception as exc:  # noqa: BLE001 - counting crashes is the point
                stats["crashed"] += 1
                kinds[f"{name}: {type(exc).__name__}: {str(exc)[:60]}"] += 1
                if stats["crashed"] <= 3 and verbose:
                    print(f"CRASH in {name}: input {data[:120].hex()}...", file=sys.stderr)
                    traceback.print_exc()
        report[name] = stats
    for kind, count in kinds.most_common(20):
        print(f"{count:6d}  {kind}", file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="inputs per importer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="comma-separated targets")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    report = run(args.n, args.seed, set(args.only.split(",")) if args.only else None)
    print(f"# importer fuzzing ({time.strftime('%Y-%m-%d %H:%M')}, seed {args.seed})\n")
    print("| importer | inputs | imported | refused (documented error) | crashed |")
    print("|---|---|---|---|---|")
    for name, s in report.items():
        print(f"| {name} | {s['inputs']} | {s['accepted']} | {s['refused']} | {s['crashed']} |")
    total = sum(s["inputs"] for s in report.values())
    crashed = sum(s["crashed"] for s in report.values())
    print(f"\n{total} inputs in {time.perf_counter() - start:.0f} s, {crashed} crashed")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
