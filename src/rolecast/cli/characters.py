"""Commands about the characters themselves: list, show, build, import, export, pack,
install, and the settings file (config)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .. import config
from ..errors import RolecastError
from ..files import write_atomic
from .common import (
    character_from,
    embedder_from,
    load_character,
    report_problems,
    retrieval_opts,
    trait_opts,
)

EXPORT_FORMATS = ("card-png", "card-json", "charx", "chatharuhi-jsonl")  # formats.detect has them


def cmd_list(args: argparse.Namespace) -> int:
    from ..character import store

    for found in store.scan():  # a broken package is skipped with a warning, not fatal
        c = found.character
        if c is None:
            print(f"rolecast: warning: skipped {found.id}: {found.problem}", file=sys.stderr)
            continue
        where = "built-in" if found.builtin else "user"
        print(f"{found.id}\t{c.name}\t{len(c.scenes)} scenes\t{c.language}\t{where}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ..character.package import package_root
    from ..character.personality import conflicts, dial_text, format_dials

    c = character_from(args)
    print(f"id:        {c.id}\nname:      {c.name}")
    print(f"aliases:   {', '.join(c.aliases) or '-'}\nlanguage:  {c.language}")
    print(f"source:    {c.source or '-'}\nuser role: {c.user_role}")
    print(f"narrators: {', '.join(c.narrators)}\nfolder:    {package_root(c)}")
    from ..voice.speaker import voice_for

    v = voice_for(c)
    where = "[voice]" if c.voice is not None else f"default for {c.language}"
    print(f"voice:     {v.backend} {v.voice or '(its default)'}, speed {v.speed:g} ({where})")
    lines = sum(len(s.lines) for s in c.scenes)
    print(f"canon:     {len(c.scenes)} scenes, {lines} lines")
    for g in c.greetings:
        print(f"greeting:  {g}")
    if c.personality or c.canon_personality:
        print(f"dials:     {format_dials(c.personality)}")
    if c.canon_personality:
        labels = " ".join(f"{f}={v}" for f, v in c.canon_personality.items())
        print(f"labels:    {labels} (what the canon shows: [personality.canon])")
    for problem in conflicts(c.personality, c.canon_personality, c.persona):
        print(f"note:      {problem} (allowed)")
    print("\n" + c.persona.strip())
    if c.personality:
        print("\n" + dial_text(c.personality, c.language))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from ..retrieval.embedders import get_embedder
    from ..retrieval.index import build_index, index_root

    c = load_character(args.name)
    embedder = get_embedder(embedder_from(args))
    lines = sum(len(s.lines) for s in c.scenes)
    started = time.perf_counter()
    folder = build_index(c, embedder, index_root())
    took = time.perf_counter() - started
    print(
        f"built {c.id} with {embedder.name}: {len(c.scenes)} scenes, {lines} lines "
        f"in {took:.2f} s ({lines / took if took else 0:.0f} lines/s) -> {folder}"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from ..character import store
    from ..character.package import save_character
    from ..formats.detect import IMPORT_FORMATS, import_source

    if len(args.source) == 1:
        fmt, path = None, args.source[0]
    elif len(args.source) == 2 and args.source[0] in IMPORT_FORMATS:
        fmt, path = args.source
    else:
        raise RolecastError(
            f"usage: rolecast import [{'|'.join(IMPORT_FORMATS)}] PATH (got {args.source})"
        )
    result = import_source(path, fmt, args.name, speaker=args.speaker, user_role=args.user_role)
    report_problems(result.problems, "skipped")
    report_problems(result.repaired, "repaired")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    report_problems(result.warnings, "warning")  # e.g. card text that looks like an injection
    if args.strict and result.problems:
        raise result.problems[0]
    c = result.character
    dest = store.user_package_path(c.id)
    if dest.exists() and not args.force:
        raise RolecastError(
            f"a character {c.id!r} already exists at {dest}; use --force to replace it "
            "or --name to import it under another id"
        )
    save_character(c, dest, images=result.images)
    print(f"imported {c.name} as {c.id}: {len(c.scenes)} scenes, user role {c.user_role} -> {dest}")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from ..character import store
    from ..character.package import save_character, slug_id, valid_id
    from ..character.personality import dial_text, draft_character, parse_traits

    dials = parse_traits([args.from_traits])
    name = args.name.strip()
    if not name:
        raise RolecastError("the new character needs a name")
    cid = valid_id(args.id or slug_id(name))
    dest = store.user_package_path(cid)
    if dest.exists() and not args.force:
        raise RolecastError(
            f"a character {cid!r} already exists at {dest}; use --force to replace it "
            "or --id to give the new one another id"
        )
    c = draft_character(cid, name, dials, args.language, args.user_role or "")
    save_character(c, dest)
    print(f"made {name} as {cid} -> {dest}")
    print(dial_text(dials, args.language))
    print(f"next: write {dest / 'persona.md'}, add scenes to canon.jsonl, then rolecast chat {cid}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..character.package import IMAGES, package_root
    from ..formats.detect import export_bytes

    character = load_character(args.name)
    root = package_root(character)
    embed = None
    if args.format == "chatharuhi-jsonl":
        from ..retrieval.embedders import get_embedder

        embedder = get_embedder(embedder_from(args))

        def embed(texts: list[str]) -> list[list[float]]:
            vectors: list[list[float]] = embedder.embed_documents(texts).tolist()
            return vectors

    data = export_bytes(character, args.format, root / IMAGES if root else None, embed)
    out = write_atomic(args.output, data)
    print(f"wrote {character.name} as {args.format} to {out} ({len(data)} bytes)")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from ..character import store
    from ..character.package import write_zip

    out = write_zip(store.find_package(args.name), Path(args.output))
    print(f"wrote {out}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from ..character import store
    from ..character.package import extract_zip, load_character, valid_id

    cid = valid_id(args.name or load_character(args.file).id)
    dest = store.user_package_path(cid)
    if dest.exists() and not args.force:
        raise RolecastError(
            f"a character {cid!r} already exists at {dest}; use --force to replace it"
        )
    extract_zip(Path(args.file), dest)
    print(f"installed {cid} -> {dest}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "list":
        file = config.read_file()
        for key, (envs, _default, what) in config.SETTINGS.items():
            value = config.resolve(key, file=file)
            if key == "api_key" and value:
                value = value[:3] + "..." + value[-2:]
            print(f"{key} = {value!r}\t# {what}; env {', '.join(envs)}")
        print(f"# file: {config.config_path()}")
        return 0
    if args.key is None:
        raise RolecastError(f"'rolecast config {args.action}' needs a setting name")
    if args.action == "get":
        print(config.resolve(args.key) or "")
    elif args.action == "set":
        if args.value is None:
            raise RolecastError(f"'rolecast config set {args.key}' needs a value")
        print(f"wrote {args.key} to {config.write_setting(args.key, args.value)}")
    else:
        print(f"removed {args.key} from {config.write_setting(args.key, None)}")
    return 0


def add_list(sub: Any) -> None:
    sub.add_parser("list", help="list installed characters").set_defaults(func=cmd_list)


def add_show(sub: Any) -> None:
    sp = sub.add_parser("show", help="show a character")
    sp.add_argument("name")
    trait_opts(sp)
    sp.set_defaults(func=cmd_show)


def add_new(sub: Any) -> None:
    sp = sub.add_parser(
        "new", help="start a new character from Big Five dials (--from-traits O=high,E=low)"
    )
    sp.add_argument("name", help="the character's name")
    sp.add_argument(
        "--from-traits",
        required=True,
        metavar="DIALS",
        help="its Big Five dials: O=high,E=low (1-5 or low/mid/high each)",
    )
    sp.add_argument("--language", default="zh", help="zh, en, ja ... (default zh)")
    sp.add_argument("--id", help="the package id (default: made from the name)")
    sp.add_argument("--user-role", help="the name the user goes by (default 来客 / visitor)")
    sp.add_argument("--force", action="store_true", help="replace a character with that id")
    sp.set_defaults(func=cmd_new)


def add_build(sub: Any) -> None:
    sp = sub.add_parser("build", help="build (or rebuild) a character's canon index")
    sp.add_argument("name")
    retrieval_opts(sp)
    sp.set_defaults(func=cmd_build)


def add_import(sub: Any) -> None:
    sp = sub.add_parser(
        "import",
        help="import a character: a character card (JSON, PNG, CHARX) or a ChatHaruhi role "
        "(story folder, JSONL, role zip, hf://OWNER/DATASET/ROLE)",
    )
    sp.add_argument(
        "source",
        nargs="+",
        metavar="[FORMAT] PATH",
        help="card or chatharuhi (detected from the file when left out), then the path",
    )
    sp.add_argument("--name", help="id for the imported character (default: from the source)")
    sp.add_argument("--force", action="store_true", help="replace an existing character")
    sp.add_argument("--strict", action="store_true", help="fail on any unreadable line")
    sp.add_argument(
        "--speaker",
        metavar="NAME",
        help="ChatHaruhi: the speaker who is the character (default: the one the folder name, "
        "gradio_header.md, the role's config or its persona names, else the one with the most "
        "lines). A card holds one character: a NAME other than its name is an error",
    )
    sp.add_argument(
        "--user-role",
        metavar="NAME",
        help="the role you speak as (default: for ChatHaruhi whoever talks to the character "
        "most, for a card 'user', which {{user}} becomes)",
    )
    sp.set_defaults(func=cmd_import)


def add_export(sub: Any) -> None:
    sp = sub.add_parser("export", help="export a character as a card or a ChatHaruhi role")
    sp.add_argument("name")
    sp.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    sp.add_argument("-o", "--output", required=True, help="file to write")
    sp.add_argument("--embedder", help="chatharuhi-jsonl: embedder for the vector column")
    sp.set_defaults(func=cmd_export)


def add_config(sub: Any) -> None:
    sp = sub.add_parser("config", help="show or change settings (the config file)")
    sp.add_argument("action", choices=("list", "get", "set", "unset"))
    sp.add_argument("key", nargs="?", help=f"one of: {', '.join(config.SETTINGS)}")
    sp.add_argument("value", nargs="?")
    sp.set_defaults(func=cmd_config)


def add_pack(sub: Any) -> None:
    sp = sub.add_parser("pack", help="pack a character into one zip file")
    sp.add_argument("name")
    sp.add_argument("-o", "--output", required=True)
    sp.set_defaults(func=cmd_pack)


def add_install(sub: Any) -> None:
    sp = sub.add_parser("install", help="install a character from a zip file")
    sp.add_argument("file")
    sp.add_argument("--name", help="id to install it as")
    sp.add_argument("--force", action="store_true", help="replace an existing character")
    sp.set_defaults(func=cmd_install)
