"""`rolecast eval ...` and `rolecast viz`: measure how well a character is played.

Each evaluation is one sub-command of `rolecast eval`, added by one function in
``EVALS`` that takes the `eval` sub-parsers and ``backend_opts``. The helpers below give
each the same options (``eval_opts``), backend (``eval_llm``), out dir and cache
(``open_out``) and report writing (``finish``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError

BackendOpts = Callable[[argparse.ArgumentParser], None]


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas: {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _names(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


def eval_opts(sp: argparse.ArgumentParser, backend_opts: BackendOpts, what: str) -> None:
    """The options every evaluation has: backend, out dir, seed, concurrency, cache."""
    sp.add_argument("name", help="character: id, name or alias")
    sp.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    sp.add_argument(
        "--out",
        type=Path,
        help=f"folder for results.json, report.md and plots (default: ./eval-{what}-<id>)",
    )
    sp.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="K",
        help="requests in flight at once with a thread-safe backend such as openai "
        "(default 4; in-process backends always run one at a time)",
    )
    sp.add_argument(
        "--fresh", action="store_true", help="ignore the cache in the out dir (it is rewritten)"
    )
    sp.add_argument(
        "--context-window",
        type=int,
        metavar="TOKENS",
        help="the model's context window: local n_ctx, or what an openai endpoint allows "
        "(prompts are fitted to it)",
    )
    backend_opts(sp)


def eval_character(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .main import _load

    return _load(args.name)


def eval_llm(args: argparse.Namespace, prefix: str = "", **options: Any):  # type: ignore[no-untyped-def]
    """The backend chosen by ``--backend``/``--model``/``--base-url``/``--api-key`` (as
    `rolecast chat` chooses it). With ``prefix="judge_"`` it reads ``args.judge_backend``,
    ``args.judge_model``, ... instead, each falling back to the unprefixed option when
    unset, so a second backend (a judge) takes options of its own. ``options`` go to the
    backend's constructor as they are."""
    from .. import config
    from ..backends.base import get_llm
    from .main import DEFAULT_BACKEND, _progress

    def opt(name: str) -> Any:
        value = getattr(args, f"{prefix}{name}", None) if prefix else None
        return value if value is not None else getattr(args, name, None)

    file = config.read_file()
    backend = config.resolve("backend", opt("backend"), file=file) or DEFAULT_BACKEND
    opts: dict[str, Any] = {
        "model": config.resolve("model", opt("model"), file=file),
        "base_url": opt("base_url"),
        "api_key": opt("api_key"),
        "progress": _progress("preparing the model"),
    }
    if getattr(args, "context_window", None):
        opts["n_ctx"] = opts["context_window"] = args.context_window
    opts.update(options)
    return get_llm(backend, **opts)


def embedder_name(args: argparse.Namespace) -> str:
    from .. import config

    return str(args.embedder or config.resolve("embedder") or "use")


def open_out(args: argparse.Namespace, eval_name: str, character, scope: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The out dir (created) and its cache for ``scope``."""
    from ..eval.report import check_out_dir, default_out_dir, open_cache

    out = check_out_dir(args.out or default_out_dir(eval_name, character.id))
    return out, open_cache(out, scope, fresh=args.fresh)


def progress_printer(label: str):  # type: ignore[no-untyped-def]
    from .main import _progress

    return _progress(label, unit="items")


def finish(out: Path, written: dict[str, Path], cache=None) -> None:  # type: ignore[no-untyped-def]
    if cache is not None and cache.hits:
        print(f"{cache.hits} items read from the cache in {cache.folder}", file=sys.stderr)
    print(f"wrote {out / 'report.md'} and {len(written) - 1} more files in {out}")


# ---- rolecast eval canon ------------------------------------------------------------------


def cmd_eval_canon(args: argparse.Namespace) -> int:
    from ..backends.base import GenerationParams
    from ..eval import canon
    from ..eval.report import Cache, header, model_note, write_report
    from ..eval.runner import workers_for
    from ..retrieval.index import load_index

    character = eval_character(args)
    if args.n < 1:
        raise InputError(f"--n must be at least 1, not {args.n}")
    canon.sample_turns(character, args.n, args.seed)  # bad input fails before a model loads
    conditions = args.conditions or list(canon.CONDITIONS)
    unknown = [c for c in conditions if c not in canon.CONDITIONS]
    if unknown:
        raise InputError(
            f"unknown condition(s) {', '.join(unknown)}; known: {', '.join(canon.CONDITIONS)}"
        )
    index = load_index(character, embedder_name(args))
    llm = eval_llm(args)
    try:
        params = GenerationParams(max_tokens=args.max_tokens, temperature=args.temperature)
        scope = Cache.scope_for(
            "canon", character, llm, params, embedder=index.embedder.name, mode=args.mode
        )
        out, cache = open_out(args, "canon", character, scope)
        result = canon.run_canon_eval(
            character,
            llm,
            index.embedder,
            index,
            n=args.n,
            seed=args.seed,
            conditions=conditions,
            params=params,
            mode=args.mode,
            cache=cache,
            workers=workers_for(llm, args.concurrency),
            progress=progress_printer("generating"),
        )
        info = {k: v for k, v in scope.items() if k not in ("eval", "character", "params")}
        head = {
            **header("canon", character, info),
            "n": args.n,
            "seed": args.seed,
            "params": scope["params"],
        }
        results = {**head, **result.to_dict()}
        figures = canon.canon_figures(result)
        markdown = canon.canon_markdown(result, head, model_note(info), list(figures))
        written = write_report(out, results, markdown, figures)
    finally:
        llm.close()
    for c, scores in result.summary.items():
        print(f"{c:8s} " + "  ".join(f"{m} {scores[m]}" for m in canon.METRICS))
    finish(out, written, cache)
    return 0


def add_canon(evsub: Any, backend_opts: BackendOpts) -> None:
    from ..eval.canon import CONDITIONS, DEFAULT_PARAMS

    sp = evsub.add_parser(
        "canon",
        help="canon reproduction on held-out scenes: the reply vs the original line, "
        "with canon retrieval, persona only and bare model",
    )
    eval_opts(sp, backend_opts, "canon")
    sp.add_argument("--n", type=int, default=20, help="held-out turns (default 20)")
    sp.add_argument(
        "--conditions",
        type=_names,
        help=f"comma-separated, of {','.join(CONDITIONS)} (default: all three)",
    )
    sp.add_argument(
        "--mode",
        choices=("hybrid", "dense", "lexical"),
        default="hybrid",
        help="retrieval mode of the canon condition (default hybrid)",
    )
    sp.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULT_PARAMS.max_tokens,
        help=f"reply length limit (default {DEFAULT_PARAMS.max_tokens})",
    )
    sp.add_argument(
        "--temperature",
        type=float,
        default=DEFAULT_PARAMS.temperature,
        help=f"sampling temperature (default {DEFAULT_PARAMS.temperature})",
    )
    sp.set_defaults(func=cmd_eval_canon)


# ---- rolecast eval retrieval --------------------------------------------------------------


def cmd_eval_retrieval(args: argparse.Namespace) -> int:
    import time

    from ..eval import retrieval
    from ..eval.report import Cache, header, model_note, open_cache, write_report
    from ..eval.runner import workers_for
    from ..retrieval.index import load_index

    character = eval_character(args)
    queries = retrieval.sample_queries(character, args.n, args.seed)
    if args.paraphrases > len(queries):
        raise InputError(
            f"--paraphrases {args.paraphrases} is more than the {len(queries)} queries"
        )
    if args.paraphrases < 0:
        raise InputError(f"--paraphrases must not be negative, not {args.paraphrases}")
    names = args.embedders or [embedder_name(args)]
    out, _ = open_out(args, "retrieval", character, {})
    notes: list[str] = []
    info: dict[str, Any] = {"backend": None, "model": None}
    cache = None
    if args.paraphrases:
        llm = eval_llm(args)
        try:
            params = retrieval.PARAPHRASE_PARAMS
            scope = Cache.scope_for("paraphrase", None, llm, params, language=character.language)
            info = {k: v for k, v in scope.items() if k not in ("eval", "params", "language")}
            cache = open_cache(out, scope, fresh=args.fresh)
            made, dropped = retrieval.paraphrase_queries(
                queries,
                llm,
                character.language,
                args.paraphrases,
                cache=cache,
                workers=workers_for(llm, args.concurrency),
                progress=progress_printer("paraphrasing"),
                params=params,
                seed=args.seed,
            )
        finally:
            llm.close()
        queries = queries + made
        if dropped:
            notes.append(f"{dropped} paraphrases were empty or repeated the line: left out")
    indexes = {}
    build_seconds = {}
    for name in names:
        started = time.perf_counter()
        indexes[name] = load_index(character, name)
        build_seconds[name] = round(time.perf_counter() - started, 3)
    result = retrieval.run_retrieval_eval(indexes, queries, args.k, args.seed)
    result.notes += notes
    head = {
        **header("retrieval", character, info),
        "seed": args.seed,
        "scenes": len(character.scenes),
        "embedders": names,
        "index_load_seconds": build_seconds,
    }
    results = {**head, **result.to_dict()}
    figures = retrieval.retrieval_figures(result)
    markdown = retrieval.retrieval_markdown(result, head, model_note(info), list(figures))
    written = write_report(out, results, markdown, figures)
    for row in result.rows:
        recall = "  ".join(f"R@{k} {row.recall[k].mean:.3f}" for k in result.ks)
        print(f"{row.kind:10s} {row.embedder:6s} {row.mode:8s} {recall}  MRR {row.mrr.mean:.3f}")
    finish(out, written, cache)
    return 0


def add_retrieval(evsub: Any, backend_opts: BackendOpts) -> None:
    from ..eval.retrieval import DEFAULT_QUERIES

    sp = evsub.add_parser(
        "retrieval",
        help="recall@k and MRR of canon retrieval for each embedder and mode",
    )
    eval_opts(sp, backend_opts, "retrieval")
    sp.add_argument(
        "--n",
        type=int,
        help=f"queries (default: every usable line, at most {DEFAULT_QUERIES})",
    )
    sp.add_argument(
        "--embedders",
        type=_names,
        help="comma-separated embedders to compare, e.g. use,e5 (default: --embedder)",
    )
    sp.add_argument("--k", type=_ints, default=[1, 5, 10], help="recall cut-offs (default 1,5,10)")
    sp.add_argument(
        "--paraphrases",
        type=int,
        default=0,
        metavar="N",
        help="also query with paraphrases of the first N queries, written once by the "
        "backend and kept in the cache (default 0: none, no backend needed)",
    )
    sp.set_defaults(func=cmd_eval_retrieval)


# ---- rolecast viz -------------------------------------------------------------------------


def cmd_viz(args: argparse.Namespace) -> int:
    from ..eval import viz
    from ..eval.report import check_out_dir, default_out_dir, write_report
    from ..retrieval.embedders import get_embedder

    character = eval_character(args)
    generated = viz.read_generated(args.generated) if args.generated else []
    if args.max_canon < 1:
        raise InputError(f"--max-canon must be at least 1, not {args.max_canon}")
    out = check_out_dir(args.out or default_out_dir("viz", character.id))
    embedder = get_embedder(embedder_name(args))
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


def add_viz(sub: Any, backend_opts: BackendOpts) -> None:
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


# One function per evaluation: `rolecast eval <name>`. The personality interview and the
# in-character probes add theirs here.
EVALS: list[Callable[[Any, BackendOpts], None]] = [add_canon, add_retrieval]


def add_eval(sub: Any, backend_opts: BackendOpts) -> None:
    """Add the eval and viz commands to the `rolecast` parser."""
    ep = sub.add_parser("eval", help="evaluate a character: canon, retrieval, ...")
    evsub = ep.add_subparsers(dest="eval_command", required=True, metavar="EVAL")
    for add in EVALS:
        add(evsub, backend_opts)
    add_viz(sub, backend_opts)
