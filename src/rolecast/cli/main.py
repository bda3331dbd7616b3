"""Entry point: ``rolecast <command>``. Each command parses, calls, prints; the commands
live in the modules beside this one, each with its ``add_<command>`` beside ``cmd_<command>``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from ..errors import RolecastError
from . import apps, avatar, characters, chat, essay, eval, ingest, study, training, viz, voice

README_WIDTH = 100  # the command list's lines in the README
# the commands in the order `rolecast --help` lists them
COMMANDS: tuple[Callable[[Any], None], ...] = (
    characters.add_list,
    characters.add_show,
    characters.add_build,
    chat.add_prompt,
    chat.add_chat,
    chat.add_chats,
    characters.add_new,
    characters.add_import,
    characters.add_export,
    apps.add_web,
    apps.add_serve,
    ingest.add_ingest,
    eval.add_eval,
    viz.add_viz,
    training.add_augment,
    training.add_dataset,
    training.add_finetune,
    essay.add_essay,
    study.add_study,
    voice.add_voice,
    avatar.add_avatar,
    characters.add_config,
    characters.add_pack,
    characters.add_install,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rolecast",
        description="Talk with fictional characters who speak the way they do in their canon.",
    )
    p.add_argument("--version", action="version", version=f"rolecast {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="show log messages")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return p


def command_list() -> str:
    """Every command with its arguments and what it does, as the README lists them: made
    from the parser itself, so the README cannot drift from `--help` (a test compares)."""
    rows: list[tuple[str, str]] = []

    def walk(parser: argparse.ArgumentParser, words: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return
        helps = {a.dest: a.help or "" for a in subs[0]._choices_actions}
        for name, sp in subs[0].choices.items():
            if name not in helps:  # an alias of a command already listed
                continue
            args = []
            for a in sp._actions:
                if a.option_strings or isinstance(a, argparse._SubParsersAction):
                    continue
                shown = a.metavar if isinstance(a.metavar, str) else a.dest.upper()
                args.append(f"[{shown}]" if a.nargs in ("?", "*") else shown)
            nested = any(isinstance(a, argparse._SubParsersAction) for a in sp._actions)
            if not nested:
                rows.append((" ".join(["rolecast", *words, name, *args]), helps[name]))
            walk(sp, [*words, name])

    walk(build_parser(), [])
    import textwrap

    width = max(len(command) for command, _ in rows) + 2
    lines = []
    for command, what in rows:
        for i, part in enumerate(
            textwrap.wrap(what, README_WIDTH - width - 2, break_on_hyphens=False) or [""]
        ):
            lines.append(f"{command if i == 0 else '':<{width}}# {part}".rstrip())
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except RolecastError as exc:
        print(f"rolecast: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (rolecast show x | head): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere at exit
        os.close(devnull)
        return 141  # 128 + SIGPIPE, as the shell reports a command a pipe stopped


if __name__ == "__main__":
    sys.exit(main())
