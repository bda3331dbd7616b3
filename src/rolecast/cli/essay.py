"""``rolecast essay``: gaokao-style essays written with Big Five dials, optionally as a
character."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .common import backend_opts, items_progress, load_character, open_llm, trait_opts


def cmd_essay(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..character.personality import format_dials, parse_traits
    from ..essay import (
        ESSAY_PARAMS,
        MIN_LENGTH,
        Settings,
        check_topic,
        essay_language,
        write_essays,
    )

    dials = parse_traits(args.trait or [])  # bad input first: before a model loads
    topic = check_topic(args.topic)
    character = load_character(args.as_character) if args.as_character else None
    language = args.language or (character.language if character else "zh")
    params = (
        ESSAY_PARAMS
        if args.max_tokens is None
        else replace(ESSAY_PARAMS, max_tokens=args.max_tokens)
    )
    settings = Settings(topic, language, dials, args.n, args.seed, params)
    settings.check()
    slug = re.sub(r"[^\w]+", "-", topic).strip("-")[:24] or "topic"
    out = Path(args.out or f"essays-{slug}-{format_dials(dials).replace(' ', '_')}")
    llm = open_llm(args)
    result = write_essays(
        llm,
        settings,
        out,
        character,
        fresh=args.fresh,
        workers=args.concurrency,
        progress=items_progress("writing"),
    )
    lang = essay_language(language)
    floor, unit = MIN_LENGTH[lang], "characters" if lang == "zh" else "words"
    for essay, path in zip(result.essays, result.files, strict=True):
        mark = "" if essay.length >= floor else f"  (short: under {floor})"
        print(f"{path}: 《{essay.title or '(no title)'}》 {essay.length} {unit}{mark}")
    who = f"as {character.name}" if character else "as a student"
    print(f"{len(result.essays)} essays {who}, dials {format_dials(dials)}: {out}/essays.json")
    return 0


def add_essay(sub: Any) -> None:
    sp = sub.add_parser(
        "essay",
        help="essays in the manner of the gaokao composition, written with Big Five dials "
        "(--trait O=high), as a student or as a character",
    )
    sp.add_argument("--topic", required=True, help="the essay's topic or title")
    trait_opts(sp)
    sp.add_argument("--n", type=int, default=5, help="essays to write (default 5)")
    sp.add_argument(
        "-o", "--out", help="folder for the essays and essays.json (default: ./essays-TOPIC-DIALS)"
    )
    sp.add_argument(
        "--as-character",
        metavar="NAME",
        help="write as this character (its persona and voice), dials over its own",
    )
    sp.add_argument(
        "--language",
        choices=("zh", "en"),
        help="the essay's language (default: the character's, or zh)",
    )
    sp.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    sp.add_argument("--max-tokens", type=int, help="longest essay in tokens (default 1600)")
    sp.add_argument("--fresh", action="store_true", help="write again: ignore the cache")
    sp.add_argument(
        "--concurrency",
        type=int,
        metavar="K",
        help="requests in flight with a thread-safe backend such as openai (default 4)",
    )
    backend_opts(sp)
    sp.set_defaults(func=cmd_essay)
