"""``rolecast study prepare | report``: a user study of blind pairwise judgements."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from .common import backend_from, backend_opts, embedder_from, items_progress, progress


def _open(args: argparse.Namespace) -> tuple[Any, Path]:
    from ..study.definition import read_study
    from ..study.prepare import study_folder

    study = read_study(args.file)
    return study, study_folder(study, args.out)


def cmd_study_prepare(args: argparse.Namespace) -> int:
    from ..character import store
    from ..retrieval.index import load_index
    from ..study.prepare import REPLIES, prepare_study

    study, out = _open(args)
    known = store.package_dirs()
    missing = [c for c in study.characters if c != store.DEFAULT_CHARACTER and c not in known]
    if missing:  # before any model loads
        from ..errors import InputError

        raise InputError(
            f"{args.file}: characters names {missing[0]!r}, which is not installed "
            "(`rolecast list` shows those that are)"
        )
    from .. import registry

    for system in study.systems:  # an unknown backend is named before anything is made
        if system.backend:
            registry.resolve("llm", system.backend)
    characters = {cid: store.load(cid) for cid in study.characters}
    embedder = embedder_from(args)
    needs_index = any(s.condition == "canon" for s in study.systems)
    indexes = {cid: load_index(c, embedder) for cid, c in characters.items()} if needs_index else {}
    base = backend_from(args)

    def open_llm(system: Any) -> Any:
        spec = replace(
            base,
            name=system.backend or base.name,
            model=system.model or base.model,
            lora=system.lora or (base.lora if not system.backend else None),
        )
        return spec.open(progress=progress(f"loading {system.id}'s model"))

    data = prepare_study(
        study, out, characters, indexes, open_llm, args.force, items_progress("replies")
    )
    print(
        f"{len(data['items'])} prompts, {len(data['systems'])} systems, {len(data['pairs'])} "
        f"pairs to judge ({data['skipped_empty']} left out: an empty reply); frozen in "
        f"{out / REPLIES}"
    )
    return 0


def cmd_study_report(args: argparse.Namespace) -> int:
    from ..chats import default_store
    from ..eval.report import write_report
    from ..study.prepare import read_prepared
    from ..study.report import score_study, study_figure, study_markdown

    study, out = _open(args)
    prepared = read_prepared(out, study)
    db = default_store()
    try:
        rows = db.votes(prepared["digest"])
    finally:
        db.close()
    result = score_study(prepared, rows, rounds=args.rounds)
    report = out / "report"
    written = write_report(report, result, study_markdown(result), {"scores": study_figure(result)})
    print(f"{result['votes']} votes by {result['raters']} raters", file=sys.stderr)
    for name in written:
        print(report / name)
    return 0


def cmd_study_serve(args: argparse.Namespace) -> int:
    import os
    import secrets

    try:
        import uvicorn
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError(
            "rolecast study serve", "starlette and uvicorn", "server"
        ) from None
    from ..chats import default_store
    from ..study.prepare import read_prepared
    from ..study.serve import StudyState, create_study_app

    study, out = _open(args)
    prepared = read_prepared(out, study)
    key = args.admin_key or os.environ.get("ROLECAST_STUDY_ADMIN_KEY") or secrets.token_urlsafe(18)
    db = default_store()
    state = StudyState(prepared, db, key)
    where = f"http://{args.host}:{args.port}"
    print(
        f"rolecast study: {where} ({len(state.pairs)} pairs); admin: {where}/admin?key={key}",
        file=sys.stderr,
    )
    try:
        uvicorn.run(create_study_app(state), host=args.host, port=args.port, log_level="warning")
    finally:
        db.close()
    return 0


def add_study(sub: Any) -> None:
    sp = sub.add_parser(
        "study",
        help="a user study: people judge pairs of replies blind; prepare the replies, then "
        "report the votes (Bradley-Terry, agreement, the original line's detection rate)",
    )
    ssub = sp.add_subparsers(dest="study_command", required=True, metavar="ACTION")
    prep = ssub.add_parser("prepare", help="make every system's replies once and freeze them")
    prep.add_argument("file", type=Path, help="the study definition (TOML)")
    prep.add_argument("--out", help="where the replies go (default: FILE's name + .study/)")
    prep.add_argument("--force", action="store_true", help="make frozen replies again")
    backend_opts(prep)
    prep.set_defaults(func=cmd_study_prepare)
    rep = ssub.add_parser("report", help="score the votes: Markdown, JSON and a chart")
    rep.add_argument("file", type=Path)
    rep.add_argument("--out", help="the study's folder (default: FILE's name + .study/)")
    rep.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds (1000)")
    rep.set_defaults(func=cmd_study_report)
    srv = ssub.add_parser("serve", help="the rating page: raters judge pairs on any screen")
    srv.add_argument("file", type=Path)
    srv.add_argument("--out", help="the study's folder (default: FILE's name + .study/)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8100)
    srv.add_argument(
        "--admin-key",
        help="the admin view's key (default: $ROLECAST_STUDY_ADMIN_KEY, else made up and printed)",
    )
    srv.set_defaults(func=cmd_study_serve)
