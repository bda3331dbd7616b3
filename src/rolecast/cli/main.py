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
from . import apps, characters, chat, eval, ingest, voice

# the commands in the order `rolecast --help` lists them
COMMANDS: tuple[Callable[[Any], None], ...] = (
    characters.add_list,
    characters.add_show,
    characters.add_build,
    chat.add_prompt,
    chat.add_chat,
    characters.add_import,
    characters.add_export,
    apps.add_web,
    apps.add_serve,
    ingest.add_ingest,
    eval.add_eval,
    voice.add_voice,
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
