"""`rolecast viz`: a 2-D map of a character's canon lines against generated lines."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InputError
from .common import embedder_from, finish, load_character


def cmd_viz(args: argparse.Namespace) -> int:
    from ..eval import viz
    from ..eval.report import check_out_dir, default_out_dir, write_report
    from ..retrieval.embedders import get_embedder

    character = load_character(args.name)
    generated = viz.read_generated(args.generated) if args.generated else []
    if args.max_canon < 1:
        raise InputError(f"--max-canon must be at least 1, not {args.max_canon}")
    out = check_out_dir(args.out or default_out_dir("viz", character.id))
    embedder = get_embedder(embedder_from(args))
    points, method = viz.build_map(character, embedder, generated, args.max_canon, args.seed)
    source = str(args.generated) if args.generated else "none (canon only)"
    title = f"{character.name}: canon lines vs generated lines"
    subtitle = f"{method} of {embedder.name} embeddings; generated lines from {source}"
    results = {
        "eval": "viz",
        "character": {"id": character.id, "name": character.name},
        "embedder": embedder.name,
        "method": method,
        "generated": source,
        "points": [{"x": p.x, "y": p.y, "label": p.label, "text": p.text} for p in points],
    }
    markdown = viz.viz_markdown(character, points, method, source, embedder.name)
    written = write_report(
        out,
        results,
        markdown,
        {"map": viz.map_figure(points, title)},
        {"map.html": viz.map_html(points, title, subtitle)},
    )
    print(f"mapped {len(points)} lines ({method}) -> {out / 'map.png'}, {out / 'map.html'}")
    finish(out, written)
    return 0


def add_viz(sub: Any) -> None:
    from ..eval.viz import MAX_CANON

    sp = sub.add_parser(
        "viz", help="a 2-D map (t-SNE) of canon lines against generated lines: PNG and HTML"
    )
    sp.add_argument("name", help="character: id, name or alias")
    sp.add_argument(
        "--generated",
        type=Path,
        metavar="FILE",
        help="generated lines: JSONL, text (one a line), or a canon eval's results.json",
    )
    sp.add_argument("--out", type=Path, help="folder for the map (default: ./viz-<id>)")
    sp.add_argument("--embedder", help="embedder: use, e5 (default: the configured one)")
    sp.add_argument(
        "--max-canon",
        type=int,
        default=MAX_CANON,
        help=f"canon lines mapped at most, a seeded sample (default {MAX_CANON})",
    )
    sp.add_argument("--seed", type=int, default=0, help="sample and t-SNE seed (default 0)")
    sp.set_defaults(func=cmd_viz)
