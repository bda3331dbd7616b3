"""`rolecast augment`, `rolecast dataset ...` and `rolecast finetune`: a character's canon grown
into a training set, shown and exported for trainers, and a LoRA trained on it."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import InputError
from .common import backend_opts, embedder_from, items_progress, load_character, open_llm


def cmd_augment(args: argparse.Namespace) -> int:
    from ..eval.report import Cache
    from ..eval.runner import workers_for
    from ..retrieval.index import load_index
    from ..session import Session
    from ..training import dataset as ds
    from ..training.augment import Settings, augment, augment_scope
    from ..training.split import held_out_scenes

    character = load_character(args.name)
    settings = Settings(
        n=args.n,
        seed=args.seed,
        held_out=args.held_out,
        canon=not args.no_canon,
        continued=args.continued,
        turns=args.turns,
        duplicate_cosine=args.duplicate_cosine,
    )
    settings.check()
    held_out_scenes(character, settings.held_out, settings.seed)  # bad input: before a model
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file: give a folder for the dataset")
    index = load_index(character, embedder_from(args))
    llm = open_llm(args)
    try:
        prototype = Session(character, index, llm, order=args.order or llm.prompt_order)
        cache = Cache(out / "cache", augment_scope(prototype, settings), enabled=not args.fresh)
        manifest, samples = augment(
            prototype,
            settings,
            cache=cache,
            workers=workers_for(llm, args.concurrency),
            progress=items_progress,
        )
    finally:
        llm.close()
    ds.write_dataset(out, manifest, samples)
    counts = Counter(s.kind for s in samples)
    drops = ", ".join(f"{k} {v}" for k, v in sorted(manifest.dropped.items())) or "none"
    print(
        f"{counts['canon']} canon and {counts['generated']} generated samples in {out} "
        f"({len(manifest.held_out)} scenes held out); dropped: {drops}"
    )
    if cache.hits:
        print(f"{cache.hits} backend calls read from the cache in {cache.folder}", file=sys.stderr)
    return 0


def add_augment(sub: Any) -> None:
    from ..prompt.assemble import ORDERS
    from ..training.augment import Settings
    from ..training.split import DEFAULT_SHARE

    sp = sub.add_parser(
        "augment",
        help="grow a character's canon into a training set: canon samples, and lines asked "
        "of the backend answered through the character's session, filtered",
    )
    sp.add_argument("name", help="character: id, name or alias")
    sp.add_argument("-o", "--output", required=True, help="the dataset folder (made or updated)")
    sp.add_argument("-n", type=int, default=100, help="generated samples wanted (default 100)")
    sp.add_argument("--seed", type=int, default=0, help="sampling and split seed (default 0)")
    sp.add_argument(
        "--held-out",
        type=float,
        default=DEFAULT_SHARE,
        metavar="SHARE",
        help=f"share of scenes no sample may come from, for eval canon (default {DEFAULT_SHARE})",
    )
    sp.add_argument("--no-canon", action="store_true", help="no samples from the canon itself")
    d = Settings()
    sp.add_argument(
        "--continued",
        type=float,
        default=d.continued,
        metavar="SHARE",
        help=f"share of generated lines whose conversation goes on, the asker's next lines "
        f"written by the backend (default {d.continued})",
    )
    sp.add_argument(
        "--turns",
        type=int,
        default=d.turns,
        help=f"turns of such a conversation at most (default {d.turns})",
    )
    sp.add_argument(
        "--duplicate-cosine",
        type=float,
        metavar="COS",
        default=d.duplicate_cosine,
        help="a generated line this close (embedding cosine) to one kept already is a near "
        f"duplicate and dropped (default {d.duplicate_cosine}, read off generated questions: "
        "benchmarks/tune_duplicates.py)",
    )
    sp.add_argument(
        "--concurrency",
        type=int,
        metavar="K",
        help="requests in flight with a thread-safe backend such as openai (default 4)",
    )
    sp.add_argument("--fresh", action="store_true", help="ask again: ignore the cache")
    sp.add_argument("--order", choices=ORDERS, help="prompt order (default: the backend's)")
    backend_opts(sp)
    sp.set_defaults(func=cmd_augment)


def cmd_dataset_show(args: argparse.Namespace) -> int:
    from ..eval.report import save_figure
    from ..prompt.tokens import quicktok_counter
    from ..training import dataset as ds
    from ..training.stats import dataset_stats, length_figure, median

    folder = Path(args.folder)
    manifest, samples = ds.read_dataset(folder)
    stats = dataset_stats(samples, quicktok_counter())
    c = manifest.character
    print(f"{c.get('name', '?')} ({c['id']}): {stats.samples} samples")
    for kind in ds.KINDS:
        print(f"  {kind:10s} {stats.kinds[kind]}")
    if len(stats.turns) > 1:
        print(
            "  generated by turn: " + ", ".join(f"{t}: {n}" for t, n in sorted(stats.turns.items()))
        )
    p, r = stats.prompt_tokens, stats.reply_tokens
    print(
        f"tokens (qwen3 tokenizer): prompts {sum(p):,} (median {median(p)}, longest {max(p)}), "
        f"replies {sum(r):,} (median {median(r)}, longest {max(r)})"
    )
    print(
        "reply language: "
        + ", ".join(f"{k} {v / stats.samples:.0%}" for k, v in stats.languages.most_common())
    )
    print(
        f"held out: {len(manifest.held_out)} scenes ({', '.join(manifest.held_out[:8])}"
        + (" ..." if len(manifest.held_out) > 8 else "")
        + ")"
    )
    drops = manifest.dropped
    print("dropped: " + (", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "none"))
    if not args.no_plot:
        plot = Path(args.plot) if args.plot else folder / "lengths.png"
        save_figure(
            length_figure(stats, f"{c.get('name', c['id'])}: {stats.samples} samples"), plot
        )
        print(f"length histogram: {plot}")
    return 0


def cmd_dataset_export(args: argparse.Namespace) -> int:
    from ..training import dataset as ds

    manifest, samples = ds.read_dataset(Path(args.folder))
    name, role = manifest.character.get("name", ""), args.user_role
    if args.format == "chatharuhi" and not role:
        role = load_character(manifest.character["id"]).user_role
    n = ds.write_export(Path(args.output), ds.export_rows(samples, args.format, name, role))
    print(f"wrote {n} rows ({args.format}) to {args.output}")
    return 0


def add_dataset(sub: Any) -> None:
    from ..training.dataset import EXPORT_FORMATS

    dp = sub.add_parser("dataset", help="show or export a training set made by augment")
    dsub = dp.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    show = dsub.add_parser(
        "show", help="counts, tokens, reply language, held-out scenes, drops, length histogram"
    )
    show.add_argument("folder", help="the dataset folder")
    show.add_argument("--plot", help="the histogram PNG (default: FOLDER/lengths.png)")
    show.add_argument("--no-plot", action="store_true", help="no histogram")
    show.set_defaults(func=cmd_dataset_show)
    export = dsub.add_parser(
        "export",
        help="JSONL for trainers: chatml (TRL, axolotl), sharegpt (LLaMA-Factory), "
        "chatharuhi ({context, target})",
    )
    export.add_argument("folder", help="the dataset folder")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="chatml")
    export.add_argument("-o", "--output", required=True, help="the JSONL file to write")
    export.add_argument(
        "--user-role", help="chatharuhi: the name user lines go under (default: the character's)"
    )
    export.set_defaults(func=cmd_dataset_export)


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..training.finetune import Settings, finetune

    settings = Settings(
        base=args.base,
        rank=args.rank,
        alpha=args.alpha,
        dropout=args.dropout,
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        max_length=args.max_length,
        batch_size=args.batch_size,
        accumulate=args.accumulate,
        max_steps=args.max_steps,
        save_every=args.save_every,
        seed=args.seed,
    )
    settings.check()
    print(f"loading {settings.base} ...", file=sys.stderr)
    result = finetune(
        Path(args.dataset),
        Path(args.output),
        settings,
        device=args.device,
        progress=step_progress(),
        convert=not args.no_gguf,
    )
    if result.trained_steps == 0:
        print(f"{result.folder} already holds this adapter ({result.steps} steps): nothing to do")
        return 0
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    skipped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in result.skipped.items() if v)
    print(
        f"adapter in {result.folder}: {result.steps} steps{resumed}, final loss "
        f"{result.loss:.3f}, {result.tokens_per_second:,.0f} tokens/s"
        + (f"; samples left out: {skipped}" if skipped else "")
    )
    print(f"chat with it: rolecast chat NAME --model {settings.base} --lora {result.folder}")
    return 0


def step_progress() -> Any:
    """A line per step on stderr (updated in place on a terminal): loss, tokens/s, ETA."""
    started = time.perf_counter()
    first: dict[str, int] = {}

    def show(step: int, steps: int, loss: float, rate: float) -> None:
        first.setdefault("step", step - 1)
        done = step - first["step"]
        left = (time.perf_counter() - started) / done * (steps - step) if done else 0.0
        end = "\n" if step == steps or not sys.stderr.isatty() else ""
        print(
            f"\rstep {step}/{steps}  loss {loss:.3f}  {rate:,.0f} tokens/s  ETA {left:,.0f} s",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    return show


def add_finetune(sub: Any) -> None:
    from ..training.finetune import Settings

    d = Settings()
    sp = sub.add_parser(
        "finetune",
        help="train a LoRA on a dataset from augment (peft on transformers, CPU or CUDA); "
        "writes peft files and a GGUF adapter for --lora",
    )
    sp.add_argument("dataset", help="the dataset folder (rolecast augment -o ...)")
    sp.add_argument(
        "--base",
        default=d.base,
        help=f"the base model: qwen2.5-coder-0.5b, smollm2-135m, a GGUF file or a Hugging "
        f"Face model folder (default {d.base})",
    )
    sp.add_argument("-o", "--output", required=True, help="the adapter folder (made)")
    sp.add_argument("--rank", type=int, default=d.rank, help=f"LoRA rank (default {d.rank})")
    sp.add_argument("--alpha", type=float, default=d.alpha, help=f"LoRA alpha ({d.alpha:g})")
    sp.add_argument("--dropout", type=float, default=d.dropout, help=f"({d.dropout:g})")
    sp.add_argument(
        "--learning-rate", type=float, default=d.learning_rate, help=f"({d.learning_rate:g})"
    )
    sp.add_argument("--epochs", type=float, default=d.epochs, help=f"(default {d.epochs:g})")
    sp.add_argument(
        "--max-length",
        type=int,
        default=d.max_length,
        help=f"tokens; longer samples are left out, never cut (default {d.max_length})",
    )
    sp.add_argument("--batch-size", type=int, default=d.batch_size, help=f"({d.batch_size})")
    sp.add_argument(
        "--accumulate", type=int, default=d.accumulate, help="batches per optimiser step (1)"
    )
    sp.add_argument("--max-steps", type=int, default=0, help="stop after this many steps")
    sp.add_argument(
        "--save-every", type=int, default=d.save_every, help=f"checkpoint steps ({d.save_every})"
    )
    sp.add_argument("--seed", type=int, default=0, help="data order and LoRA init (default 0)")
    sp.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    sp.add_argument(
        "--no-gguf", action="store_true", help="peft files only, no GGUF adapter for llama.cpp"
    )
    sp.set_defaults(func=cmd_finetune)
