"""What the command modules share: the options that choose a backend, what those options
resolve to, loading a character, progress lines. Command modules import from here and
never from each other (a test walks the imports)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import config

if TYPE_CHECKING:
    from pathlib import Path

    from ..backends.base import LLM
    from ..backends.spec import BackendSpec
    from ..character.model import Character
    from ..eval.report import Cache
    from ..session import Session

DEFAULT_BACKEND = config.SETTINGS["backend"][1] or "local"


def load_character(name: str | None) -> Character:
    from ..character import store

    return store.load(name or store.DEFAULT_CHARACTER)


def character_from(args: argparse.Namespace) -> Character:
    """The character ``args.name`` names, with the Big Five dials of ``--trait`` over its
    own ``[personality]`` (a bad trait fails before anything loads)."""
    from ..character.personality import parse_traits, with_dials

    dials = parse_traits(getattr(args, "trait", None) or [])
    return with_dials(load_character(args.name), dials)


def trait_opts(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--trait",
        action="append",
        metavar="FACTOR=LEVEL",
        help="a Big Five dial over the character's own [personality]: O, C, E, A or N "
        "(or its name) = 1-5 or low/mid/high, e.g. --trait O=high --trait N=low "
        "(repeat it, or O=high,N=low)",
    )


def progress(label: str, unit: str = "MB") -> Callable[[int, int], None]:
    """A progress printer for long steps (stderr, one updating line); ``unit`` "MB" shows
    bytes as megabytes, any other unit shows counts."""
    shown = {"pct": -1}
    step = 1 if sys.stderr.isatty() else 25  # a log gets a line every quarter, not every percent

    def show(done: int, total: int) -> None:
        pct = int(100 * done / total) if total else 100
        if pct != shown["pct"] and (pct % step == 0 or done >= total):
            shown["pct"] = pct
            end = "\n" if done >= total or step > 1 else ""
            amount = f"{done >> 20}/{total >> 20} MB" if unit == "MB" else f"{done}/{total} {unit}"
            print(
                f"\r{label}: {pct:3d}% ({amount})",
                end=end,
                file=sys.stderr,
                flush=True,
            )

    return show


def finish(out: Path, written: dict[str, Path], *caches: Cache | None) -> None:
    """Say what was written, and how many items came from the cache(s) (``None`` skipped)."""
    used = [c for c in caches if c is not None]
    hits = sum(c.hits for c in used)
    if hits:
        print(f"{hits} items read from the cache in {used[0].folder}", file=sys.stderr)
    print(f"wrote {out / 'report.md'} and {len(written) - 1} more files in {out}")


def items_progress(label: str) -> Callable[[int, int], None]:
    """A progress printer that counts items (evaluations, datasets)."""
    return progress(label, unit="items")


def report_problems(problems: list[Any], label: str, limit: int = 10) -> None:
    for p in problems[:limit]:
        print(f"{label}: {p}", file=sys.stderr)
    if len(problems) > limit:
        print(f"{label}: ... and {len(problems) - limit} more", file=sys.stderr)


# ------------------------------------------------------------------ options


def character_arg(sp: argparse.ArgumentParser, what: str = "character") -> None:
    """An optional character id, the built-in default character when left out."""
    from ..character.store import DEFAULT_CHARACTER

    help = f"{what} (default: %(default)s)"
    sp.add_argument("name", nargs="?", default=DEFAULT_CHARACTER, help=help)


def retrieval_opts(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--embedder",
        help="embedder: use, e5 (default: $ROLECAST_EMBEDDER, the config file, or use)",
    )


def backend_opts(sp: argparse.ArgumentParser, key_flag: str = "--api-key") -> None:
    """``--embedder``, ``--backend``, ``--base-url``, the key flag and ``--model``."""
    retrieval_opts(sp)
    sp.add_argument(
        "--backend",
        help="LLM backend: local, openai, echo (default: $ROLECAST_BACKEND, the config "
        f"file, or {DEFAULT_BACKEND})",
    )
    sp.add_argument(
        "--base-url",
        help="openai backend: endpoint (default: $ROLECAST_BASE_URL, $OPENAI_BASE_URL, "
        "the config file, or api.openai.com)",
    )
    sp.add_argument(
        key_flag,
        dest="api_key",
        help="openai backend: key (default: $ROLECAST_API_KEY, $OPENAI_API_KEY, config file)",
    )
    sp.add_argument(
        "--model",
        help="model for the backend: for local a name (qwen2.5-coder-0.5b, "
        "qwen2.5-coder-1.5b, smollm2-135m), a GGUF path or hf:OWNER/REPO/FILE (default: "
        "$ROLECAST_MODEL or qwen2.5-coder-0.5b)",
    )
    sp.add_argument(
        "--lora",
        metavar="ADAPTER",
        help="local backend: a LoRA adapter folder from `rolecast finetune` (for its base "
        "model; default: the character's [model] table, if any)",
    )


def turn_opts(sp: argparse.ArgumentParser) -> None:
    """The backend options and what shapes a turn: ``--as``, ``--order`` and ``--trait``."""
    backend_opts(sp)
    trait_opts(sp)
    sp.add_argument(
        "--as",
        dest="as_role",
        help="speak as this role (default: the "
        "character's user role); a narrator name such as 旁白 narrates",
    )
    sp.add_argument(
        "--order",
        choices=("classic", "split", "cache"),
        help="prompt order: classic (canon in the system message), split (canon as a "
        "system message right before the line: persona and history stay a reusable KV "
        "cache prefix) or cache (canon inside the user's turn); default: split for the "
        "local backend, classic otherwise",
    )


# ------------------------------------------------------------------ what they resolve to


def backend_from(args: argparse.Namespace, prefix: str = "") -> BackendSpec:
    """The backend the options ask for (flag > environment > config file > default). With
    ``prefix="judge_"`` it reads ``args.judge_backend``, ``args.judge_model``, ... each
    falling back to the unprefixed option when unset, so a second backend (a judge) takes
    options of its own."""
    from ..backends.spec import backend_spec

    def opt(name: str) -> Any:
        value = getattr(args, f"{prefix}{name}", None) if prefix else None
        return value if value is not None else getattr(args, name, None)

    return backend_spec(
        opt("backend"),
        opt("model"),
        opt("base_url"),
        opt("api_key"),
        lora=None if prefix else getattr(args, "lora", None),  # the judge runs no adapter
    )


def open_llm(args: argparse.Namespace, prefix: str = "", **extra: Any) -> LLM:
    """The backend the options ask for, made now (a local model loads, with a progress
    line). ``extra`` go to backends that take them (n_ctx, seed...)."""
    return backend_from(args, prefix).open(progress=progress("preparing the model"), **extra)


def embedder_from(args: argparse.Namespace) -> str:
    from ..backends.spec import embedder_name

    return embedder_name(getattr(args, "embedder", None))


def open_session(
    args: argparse.Namespace, character: Character | None = None, replies: bool = True
) -> Session:
    """A session with the character the options name, their backend and embedder. A wrong
    backend or embedder name fails before anything loads. ``replies=False``: the session
    only assembles prompts, and a local model loads its tokenizer, not its weights."""
    from ..retrieval.index import load_index
    from ..session import Session

    embedder = embedder_from(args)
    character = character or character_from(args)
    spec = backend_from(args).for_character(character)
    index = load_index(character, embedder)
    extra = {} if replies else {"vocab_only": True}
    llm = spec.open(progress=progress("preparing the model"), **extra)
    return Session(character, index, llm, order=args.order or llm.prompt_order)
