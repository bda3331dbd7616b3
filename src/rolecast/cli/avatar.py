"""``rolecast avatar make NAME --from-portrait``: sprite frames drafted from the portrait."""

from __future__ import annotations

import argparse
import io
from typing import Any

from ..errors import InputError


def cmd_avatar_make(args: argparse.Namespace) -> int:
    from ..avatar import FOLDER, TOML, avatar_toml, draft_sprites, guess_regions, parse_box
    from ..character import store
    from ..character.package import load_character, package_image
    from ..files import write_atomic

    if not args.from_portrait:
        raise InputError("say where the avatar comes from: --from-portrait")
    mouth = parse_box(args.mouth) if args.mouth else None  # bad input before anything is read
    eyes = [parse_box(e, "--eyes") for e in args.eyes or []]
    path = store.find_package(args.name)
    if path.parent == store.BUILTIN_DIR:
        raise InputError(
            f"{args.name} is built in and read-only: `rolecast pack {args.name}` and "
            "`rolecast install` a copy of your own to give it an avatar"
        )
    character = load_character(path)
    picture = package_image(path, character.portrait)
    if picture is None:
        raise InputError(
            f"{character.name} ({character.id}) has no portrait to draw an avatar from: set "
            'portrait = "images/NAME.png" in its character.toml'
        )
    folder = path / FOLDER
    if (folder / TOML).exists() and not args.force:
        raise InputError(f"{folder / TOML} exists: --force draws the sprites again")
    from PIL import Image

    with Image.open(picture) as opened:
        portrait = opened.convert("RGBA")
    if mouth is None:
        found = guess_regions(portrait)
        if found is None:
            raise InputError(
                f"no face found in {picture.name} (or animeface is not installed): give the "
                "mouth's region, --mouth X,Y,WIDTH,HEIGHT in pixels (and --eyes for blinking)"
            )
        mouth, guessed_eyes = found
        eyes = eyes or guessed_eyes
    frames = draft_sprites(portrait, mouth, eyes)
    for name, image in frames.items():  # every picture first, the toml that names them last
        buf = io.BytesIO()
        image.save(buf, "PNG")
        write_atomic(folder / f"{name}.png", buf.getvalue())
    write_atomic(folder / TOML, avatar_toml("blink" in frames))
    print(f"wrote {len(frames)} sprites and {TOML} in {folder}")
    return 0


def add_avatar(sub: Any) -> None:
    sp = sub.add_parser("avatar", help="a character's on-screen avatar (sprites)")
    asub = sp.add_subparsers(dest="avatar_command", required=True, metavar="ACTION")
    make = asub.add_parser("make", help="draft sprite frames (mouth closed, half, open; blink)")
    make.add_argument("name", help="an installed character")
    make.add_argument("--from-portrait", action="store_true", help="draw over its portrait")
    make.add_argument(
        "--mouth",
        metavar="X,Y,W,H",
        help="the mouth's region in the portrait, in pixels (default: from the anime face "
        "animeface finds)",
    )
    make.add_argument(
        "--eyes", action="append", metavar="X,Y,W,H", help="an eye's region (repeatable)"
    )
    make.add_argument("--force", action="store_true", help="draw over an avatar already there")
    make.set_defaults(func=cmd_avatar_make)
