"""`rolecast ingest ...`: build a character from subtitled episodes, step by step."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError, RolecastError
from .common import backend_opts, open_llm, progress


def _steps() -> Callable[[str, int, int], None]:

    printers: dict[str, Callable[[int, int], None]] = {}

    def show(step: str, done: int, total: int) -> None:
        if step not in printers:
            printers[step] = progress(step, unit="lines" if step != "frames" else "frames")
        printers[step](done, total)

    return show


def cmd_episode(args: argparse.Namespace) -> int:
    from ..ingest.workdir import WorkDir, episode

    files = [Path(p) for p in args.files]
    video, subs = (None, files[0]) if len(files) == 1 else (files[0], files[1])
    for f in files:
        if not f.is_file():
            raise InputError(f"no such file: {f}")
    summary = episode(
        WorkDir(args.output),
        subs,
        video,
        primary_language=args.language,
        frames=not args.no_frames,
        faces=args.faces,
        progress=_steps(),
    )
    faces = f" ({summary['faces']} chosen for a face)" if "faces" in summary else ""
    print(
        f"{summary['dialogue']} dialogue lines ({summary.get('format')}, "
        f"{summary.get('encoding')}); audio: {summary['audio']}; frames: {summary['frames']}"
        + faces
    )
    if summary.get("trimmed"):
        print(
            f"{len(summary['trimmed'])} lines overlap another: their clips keep the part heard "
            "alone",
            file=sys.stderr,
        )
    if summary.get("mixed"):
        shown = ", ".join(map(str, summary["mixed"][:10]))
        print(
            f"{len(summary['mixed'])} lines are never heard alone (lines {shown}): their "
            "speaker can only be a 'maybe'; label them by hand if they matter",
            file=sys.stderr,
        )
    for note in summary.get("dropped", [])[:10]:
        print(f"dropped: {note}", file=sys.stderr)
    if summary.get("clipped"):
        print(f"{summary['clipped']} lines cut at the end of the video", file=sys.stderr)
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from ..ingest.workdir import WorkDir, read_labels

    work = WorkDir(args.workdir)
    if args.csv:
        given = read_labels(Path(args.csv))
        dialogue = {ln.index for ln in work.lines() if ln.kind == "dialogue"}
        stray = sorted(set(given) - dialogue)
        if stray:
            raise InputError(
                f"{args.csv} labels lines that are not dialogue lines of {work.path}: "
                f"{', '.join(map(str, stray[:10]))}"
            )
        work.save_labels(given)
        print(f"{len(given)} labels from {args.csv}")
        return 0
    labels = work.labels()
    lines = [ln for ln in work.lines() if ln.kind == "dialogue" and ln.index not in labels]
    print(
        "Type who says each line (Enter skips, q stops); labels are saved as you go.\n"
        "A few lines per speaker are enough.",
        file=sys.stderr,
    )
    for ln in lines:
        hint = f" [{ln.speaker_hint}?]" if ln.speaker_hint else ""
        clip = work.path / "clips" / f"{ln.index}.wav"
        where = f" ({clip})" if clip.is_file() else ""
        try:
            answer = input(f"#{ln.index} {ln.start:7.1f}s{hint} {ln.text}{where}\n> ").strip()
        except EOFError:
            break
        if answer.lower() == "q":
            break
        if answer:
            labels[ln.index] = answer
            work.save_labels(labels)
    print(f"{len(labels)} lines labelled in {work.path / 'labels.csv'}")
    return 0


def cmd_attribute(args: argparse.Namespace) -> int:
    from collections import Counter

    from ..ingest.workdir import WorkDir, attribute

    report = attribute(WorkDir(args.workdir), progress=_steps())
    bands = Counter(a.band for a in report.attributions.values())
    who = Counter(
        a.speaker for a in report.attributions.values() if a.band in ("label", "assigned")
    )
    print(
        "lines: " + ", ".join(f"{bands[b]} {b}" for b in ("label", "assigned", "maybe", "unknown"))
    )
    print("speakers: " + ", ".join(f"{s} {n}" for s, n in who.most_common()))
    if report.accuracy is None:
        print("accuracy: label at least two lines per speaker to estimate it")
    else:
        print(
            f"cross-validated accuracy on the labelled lines: {report.accuracy:.0%} "
            f"({report.checked} lines)"
        )
        for line, labelled, got in report.confusions[:10]:
            print(f"  line {line}: labelled {labelled}, attributed {got}", file=sys.stderr)
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from ..character import store
    from ..ingest.workdir import WorkDir, draft_persona, package

    work = WorkDir(args.workdir)
    from ..character.package import slug_id

    cid = args.name
    dest = store.user_package_path(cid or slug_id(args.speaker))
    if dest.exists() and not args.force:  # before loading a model to draft the persona
        raise RolecastError(f"a character {dest.name!r} already exists at {dest}; use --force")
    persona = None
    if not args.no_persona:
        persona = draft_persona(open_llm(args))
    c = package(
        work,
        args.speaker,
        dest,
        cid=cid,
        episode_id=args.episode,
        include_maybe=args.maybe,
        persona=persona,
    )
    n_lines = sum(1 for s in c.scenes for ln in s.lines if ln.speaker == c.name)
    n_images = sum(1 for s in c.scenes for ln in s.lines if ln.image)
    print(
        f"packaged {c.name} as {c.id}: {len(c.scenes)} scenes, {n_lines} of their lines, "
        f"{n_images} frames -> {dest}\nthe persona is a draft: edit {dest / 'persona.md'}"
    )
    return 0


def add_ingest(sub: Any) -> None:
    p = sub.add_parser("ingest", help="build a character from subtitled episodes")
    steps = p.add_subparsers(dest="step", required=True, metavar="STEP")
    sp = steps.add_parser("episode", help="read subtitles, cut clips, take frames")
    sp.add_argument("files", nargs="+", metavar="[VIDEO] SUBS", help="video (optional), subtitles")
    sp.add_argument("-o", "--output", required=True, metavar="WORKDIR")
    sp.add_argument("--language", default="auto", help="primary language of bilingual subtitles")
    sp.add_argument("--no-frames", action="store_true", help="do not take frames")
    sp.add_argument(
        "--faces",
        action="store_true",
        help="prefer frames where an anime face is seen (extra ingest-faces)",
    )
    sp.set_defaults(func=cmd_episode)
    sp = steps.add_parser("label", help="label a few lines per speaker (or import a CSV)")
    sp.add_argument("workdir")
    sp.add_argument("--csv", help="a file of 'line,speaker' rows")
    sp.set_defaults(func=cmd_label)
    sp = steps.add_parser("attribute", help="attribute every line to a speaker by voice")
    sp.add_argument("workdir")
    sp.set_defaults(func=cmd_attribute)
    sp = steps.add_parser("package", help="a character package for one speaker")
    sp.add_argument("workdir")
    sp.add_argument("--speaker", required=True)
    sp.add_argument("--name", help="id of the package (default: from the speaker)")
    sp.add_argument("--episode", default="1", help="episode number for scene ids")
    sp.add_argument("--maybe", action="store_true", help="also use lines attributed as 'maybe'")
    sp.add_argument("--no-persona", action="store_true", help="do not draft a persona")
    sp.add_argument("--force", action="store_true", help="replace an existing character")
    backend_opts(sp)
    sp.set_defaults(func=cmd_package)
