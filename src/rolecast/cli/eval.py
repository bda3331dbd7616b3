"""`rolecast eval ...` and `rolecast viz`: measure how well a character is played.

Each evaluation is one sub-command of `rolecast eval`, added by one function in
``EVALS`` that takes the `eval` sub-parsers. The helpers below give
each the same options (``eval_opts``), backend (``eval_llm``), out dir and cache
(``open_out``) and report writing (``finish``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError
from .common import backend_opts, embedder_from, load_character, open_llm, progress


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


def eval_opts(sp: argparse.ArgumentParser, what: str) -> None:
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


def order_opt(sp: argparse.ArgumentParser) -> None:
    """--order, for the evaluations that hold conversations as `rolecast chat` does."""
    from ..prompt.assemble import ORDERS

    sp.add_argument(
        "--order",
        choices=ORDERS,
        help="prompt order (default: the backend's, as `rolecast chat` uses it)",
    )


def eval_character(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    return load_character(args.name)


def eval_llm(args: argparse.Namespace, prefix: str = "", **options: Any):  # type: ignore[no-untyped-def]
    """The backend chosen by ``--backend``/``--model``/``--base-url``/``--api-key`` (as
    `rolecast chat` chooses it); ``prefix="judge_"`` reads the ``--judge-*`` options first
    (see :func:`common.backend_from`). ``options`` go to the backend when it takes them."""
    if getattr(args, "context_window", None):
        options = {"n_ctx": args.context_window, "context_window": args.context_window, **options}
    return open_llm(args, prefix, **options)


def embedder_name(args: argparse.Namespace) -> str:
    return embedder_from(args)


def open_out(args: argparse.Namespace, eval_name: str, character, scope: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The out dir (created) and its cache for ``scope``."""
    from ..eval.report import check_out_dir, default_out_dir, open_cache

    out = check_out_dir(args.out or default_out_dir(eval_name, character.id))
    return out, open_cache(out, scope, fresh=args.fresh)


def progress_printer(label: str):  # type: ignore[no-untyped-def]

    return progress(label, unit="items")


def finish(out: Path, written: dict[str, Path], *caches) -> None:  # type: ignore[no-untyped-def]
    """Say what was written, and how many items came from the cache(s) (``None`` skipped)."""
    used = [c for c in caches if c is not None]
    hits = sum(c.hits for c in used)
    if hits:
        print(f"{hits} items read from the cache in {used[0].folder}", file=sys.stderr)
    print(f"wrote {out / 'report.md'} and {len(written) - 1} more files in {out}")


# ---- what the personality and in-character evals share -------------------------------------

JUDGE_OPTIONS = ("judge_backend", "judge_model", "judge_base_url", "judge_api_key")
# the character's answers (kept as plain numbers: the CLI imports no backend code to start)
REPLY_MAX_TOKENS, REPLY_TEMPERATURE = 160, 0.7


def judge_opts(sp: argparse.ArgumentParser) -> None:
    """``--judge-backend``, ``--judge-model``, ``--judge-base-url``, ``--judge-api-key``."""
    sp.add_argument(
        "--judge-backend",
        help="backend of the judge (default: the same backend object as the character's; "
        "any --judge-* option gives the judge a backend of its own, the rest of its "
        "settings taken from --backend, --model, ...)",
    )
    sp.add_argument("--judge-model", help="model of the judge (default: --model)")
    sp.add_argument("--judge-base-url", help="openai judge: endpoint (default: --base-url)")
    sp.add_argument("--judge-api-key", help="openai judge: key (default: --api-key)")


def reply_opts(sp: argparse.ArgumentParser) -> None:
    """``--language``, ``--max-tokens`` and ``--temperature`` of the character's replies."""
    sp.add_argument(
        "--language",
        choices=("zh", "en"),
        help="language of the questions (default: the character's; zh for a Chinese "
        "character, else en)",
    )
    sp.add_argument(
        "--max-tokens",
        type=int,
        default=REPLY_MAX_TOKENS,
        help=f"reply length limit (default {REPLY_MAX_TOKENS})",
    )
    sp.add_argument(
        "--temperature",
        type=float,
        default=REPLY_TEMPERATURE,
        help=f"sampling temperature (default {REPLY_TEMPERATURE})",
    )


def wants_own_judge(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) is not None for name in JUDGE_OPTIONS)


def judge_for(args: argparse.Namespace, llm):  # type: ignore[no-untyped-def]
    """The judge backend: one of its own when a ``--judge-*`` option is given, else ``llm``
    itself (the same object: a model is never loaded twice)."""
    return eval_llm(args, prefix="judge_") if wants_own_judge(args) else llm


def reply_params(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ..backends.base import GenerationParams

    if args.max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1, not {args.max_tokens}")
    return GenerationParams(max_tokens=args.max_tokens, temperature=args.temperature)


def item_seed(seed: int, name: str) -> int:
    """The sampling seed of one item (a question, a probe): the same on every run."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def chat_session(character, llm, index, params):  # type: ignore[no-untyped-def]
    """The character's normal chat setup, retrieval on: the prototype of every item's
    session (as the canon condition of `eval canon` builds it)."""
    from ..eval.canon import condition_session

    return condition_session("canon", character, llm, index, params)


def fresh_asker(prototype, seed: int):  # type: ignore[no-untyped-def]
    """An ``ask`` that puts the line to a new Session like ``prototype``, sampled with
    ``seed``: nothing carries over from one item to the next."""
    from ..eval.canon import fresh_session
    from ..eval.interview import session_asker

    return session_asker(lambda: fresh_session(prototype, seed))


def close_all(*llms) -> None:  # type: ignore[no-untyped-def]
    """Close each backend once (the judge may be the character's backend itself)."""
    closed: list[object] = []
    for llm in llms:
        if llm is not None and not any(llm is c for c in closed):
            closed.append(llm)
            llm.close()


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


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
        order = args.order or llm.prompt_order
        scope = Cache.scope_for(
            "canon",
            character,
            llm,
            params,
            embedder=index.embedder.name,
            mode=args.mode,
            order=order,
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
            order=order,
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


def add_canon(evsub: Any) -> None:
    from ..eval.canon import CONDITIONS, DEFAULT_PARAMS

    sp = evsub.add_parser(
        "canon",
        help="canon reproduction on held-out scenes: the reply vs the original line, "
        "with canon retrieval, persona only and bare model",
    )
    eval_opts(sp, "canon")
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
    order_opt(sp)
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


# ---- rolecast eval smoke ------------------------------------------------------------------


def cmd_eval_smoke(args: argparse.Namespace) -> int:
    from ..eval import smoke
    from ..eval.report import Cache, header, model_note, write_report
    from ..retrieval.index import load_index
    from ..session import Session

    character = eval_character(args)
    chats = smoke.read_battery(args.lines) if args.lines else None  # bad input: before the model
    index = load_index(character, embedder_name(args))
    llm = eval_llm(args)
    try:
        prototype = Session(character, index, llm, order=args.order or llm.prompt_order)
        scope = Cache.scope_for(
            "smoke",
            character,
            llm,
            prototype.params,
            embedder=index.embedder.name,
            order=prototype.order,
            budget=[prototype.budget.canon, prototype.budget.history, prototype.budget.total]
            if prototype.budget
            else None,
        )
        out, cache = open_out(args, "smoke", character, scope)
        result = smoke.run_smoke_eval(
            prototype, chats, seed=args.seed, cache=cache, progress=progress_printer("chatting")
        )
        info = {k: v for k, v in scope.items() if k not in ("eval", "character", "params")}
        head = {**header("smoke", character, info), "seed": args.seed, "params": scope["params"]}
        results = {**head, **result.to_dict()}
        written = write_report(out, results, smoke.smoke_markdown(result, head, model_note(info)))
    finally:
        llm.close()
    rates = result.rates
    print(
        f"{result.total} replies, {result.clean} clean; "
        + "  ".join(f"{k} {result.counts[k]} ({rates[k]:.0%})" for k in smoke.FAILURES)
    )
    timing = result.timing()
    print(
        f"median turn {timing['median_turn_s']} s; gate "
        + (
            "passed"
            if result.passed()
            else "failed: " + ", ".join(k for k, ok in result.verdicts().items() if not ok)
        )
    )
    finish(out, written, cache)
    return 1 if args.check and not result.passed() else 0


def add_smoke(evsub: Any) -> None:
    sp = evsub.add_parser(
        "smoke",
        help="the conversation gate: ordinary multi-turn chats, each reply checked for "
        "empty replies, prompt leaks, repeats, refusals, canon copies, speaking for others, "
        "wrong language and over-long replies",
    )
    eval_opts(sp, "smoke")
    sp.add_argument(
        "--lines",
        type=Path,
        metavar="FILE",
        help="user lines to say: one a turn ('category<TAB>line' or the line), a blank line "
        "between chats (default: the built-in battery of the character's language)",
    )
    order_opt(sp)
    sp.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    sp.set_defaults(func=cmd_eval_smoke)


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


def add_retrieval(evsub: Any) -> None:
    from ..eval.retrieval import DEFAULT_QUERIES

    sp = evsub.add_parser(
        "retrieval",
        help="recall@k and MRR of canon retrieval for each embedder and mode",
    )
    eval_opts(sp, "retrieval")
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


# ---- rolecast eval personality ------------------------------------------------------------


def personality_figure(result, labels=None):  # type: ignore[no-untyped-def]
    """Bars of the five factor scores on the 1-5 scale, with the labels where given: a
    marker at a numeric label, the word at a high/low one."""
    from ..eval import interview as iv
    from ..eval.report import new_figure, plot_context

    labels = labels or {}
    with plot_context():
        fig = new_figure(6.4, 4.0)
        ax = fig.add_subplot()
        scores = [result.scores[f] for f in iv.FACTORS]
        xs = list(range(len(scores)))
        heights = [0.0 if s.score is None else s.score - iv.SCALE_MIN for s in scores]
        ax.bar(xs, heights, 0.6, bottom=iv.SCALE_MIN, color="#4c72b0", label="score")
        for x, s in zip(xs, scores, strict=True):
            text = "n/a" if s.score is None else f"{s.score:.2f}"
            y = iv.SCALE_MIN if s.score is None else s.score
            ax.text(x, y + 0.05, text, ha="center", va="bottom", fontsize="small")
        marked = [(x, labels[s.factor]) for x, s in enumerate(scores) if s.factor in labels]
        numeric = [(x, v) for x, v in marked if not isinstance(v, str)]
        if numeric:
            ax.scatter(
                [x for x, _ in numeric],
                [v for _, v in numeric],
                marker="D",
                color="#dd8452",
                zorder=3,
                label="label",
            )
        for x, v in marked:
            if isinstance(v, str):
                ax.text(x, iv.SCALE_MAX + 0.15, f"label: {v}", ha="center", fontsize="small")
        ax.axhline(iv.MIDPOINT, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xticks(xs, [f"{s.factor}\n{s.name}" for s in scores], fontsize="small")
        ax.set_ylim(iv.SCALE_MIN, iv.SCALE_MAX + 0.5)
        ax.set_ylabel("score (1-5)")
        ax.set_title(f"Big Five interview: {result.character}")
        if numeric:
            ax.legend(fontsize="small", loc="lower right")
    return fig


def cmd_eval_personality(args: argparse.Namespace) -> int:
    from ..eval import interview as iv
    from ..eval.report import Cache, backend_info, header, model_note, open_cache, write_report
    from ..eval.runner import run_items, workers_for
    from ..retrieval.index import load_index

    character = eval_character(args)
    if args.items is not None and args.items < 1:
        raise InputError(f"--items must be at least 1, not {args.items}")
    items = iv.items_for(per_factor=args.items)
    labels = iv.read_labels(args.labels) if args.labels is not None else None
    language = iv.question_language(args.language or character.language)
    params = reply_params(args)  # bad input fails before a model loads
    index = load_index(character, embedder_name(args))
    llm = eval_llm(args)
    judge = llm
    try:
        judge = judge_for(args, llm)
        scope = Cache.scope_for(
            "personality",
            character,
            llm,
            params,
            embedder=index.embedder.name,
            mode="hybrid",
            language=language,
            seed=args.seed,
        )
        out, cache = open_out(args, "personality", character, scope)
        # the judge's work depends on the answers and the judge, not on the character's backend
        judge_scope = Cache.scope_for(
            "personality-judge", character, judge, iv.JUDGE_PARAMS, language=language
        )
        judge_cache = open_cache(out, judge_scope, fresh=args.fresh)
        prototype = chat_session(character, llm, index, params)

        def answer(item: iv.Item) -> dict[str, object]:
            ask = fresh_asker(prototype, item_seed(args.seed, f"bfi-{item.number}"))
            return iv.ask_item(item, ask, language).to_dict()

        answers = [
            iv.Answer.from_dict(v)
            for v in run_items(
                items,
                answer,
                key=lambda item: {"phase": "answer", "item": item.number},
                cache=cache,
                workers=workers_for(llm, args.concurrency),
                progress=progress_printer("answering"),
            )
        ]
        judged = [
            iv.Judged.from_dict(v)
            for v in run_items(
                answers,
                lambda a: iv.judge_answer(character.name, a, judge).to_dict(),
                # the answer is part of the key: a changed answer is judged again
                key=lambda a: {
                    "phase": "judge",
                    "item": a.item.number,
                    "question": a.question,
                    "reply": a.reply,
                },
                cache=judge_cache,
                workers=workers_for(judge, args.concurrency),
                progress=progress_printer("judging"),
            )
        ]
    finally:
        close_all(llm, judge)
    scores = iv.big_five(judged)
    comparison = iv.compare(scores, labels) if labels is not None else None
    settings = {
        "items_per_factor": args.items,
        "seed": args.seed,
        "params": scope["params"],
        "judge_params": judge_scope["params"],
        "labels_file": None if args.labels is None else str(args.labels),
    }
    result = iv.InterviewResult(
        character.name, language, judged, scores, comparison, judge.model, settings
    )
    info = {**backend_info(llm), "judge": backend_info(judge), "embedder": index.embedder.name}
    head = header("personality", character, info)
    body = {k: v for k, v in result.to_dict().items() if k not in head}
    notes = [f"Answers: {model_note(info)}"]
    if judge is llm:
        notes.append("The same backend judged the answers.")
    else:
        notes.append(f"Judge: {model_note(backend_info(judge))}")
    figures = {"big_five": personality_figure(result, labels)}
    markdown = "\n".join(
        [
            f"# Personality interview: {character.name} ({character.id})",
            "",
            *(f"{n}\n" for n in notes),
            f"{len(items)} BFI items ({args.items or 'all'} per factor), each asked in a fresh "
            f"conversation with the character's canon retrieved (embedder "
            f"`{index.embedder.name}`, seed {args.seed}), then rated 1-5 by the judge.",
            "",
            "![big_five](big_five.png)",
            "",
            iv.markdown(result),
        ]
    )
    written = write_report(out, {**head, **body}, markdown, figures)
    for f, s in scores.items():
        score = "n/a " if s.score is None else f"{s.score:.2f}"
        line = f"{f} {s.name:18s} {score}  ({s.items}/{s.asked} items)"
        if comparison and f in comparison["factors"]:
            label = comparison["factors"][f]["label"]
            line += f"  label {label:g}" if isinstance(label, float) else f"  label {label}"
        print(line)
    if comparison:
        mae, acc = comparison["mean_abs_error"], comparison["side_accuracy"]
        print(
            f"mean abs error {'n/a' if mae is None else f'{mae:.2f}'} "
            f"({comparison['n_error']} factors), high/low side right {_rate(acc)} "
            f"({comparison['n_side']} factors)"
        )
    finish(out, written, cache, judge_cache)
    return 0


def add_personality(evsub: Any) -> None:
    sp = evsub.add_parser(
        "personality",
        help="Big Five interview: the 44 BFI items as open questions, each answer rated "
        "by a judge; factor scores, compared with labels when given",
    )
    eval_opts(sp, "personality")
    sp.add_argument(
        "--items",
        type=int,
        metavar="N",
        help="items per factor, the first N of each (default: all 44, 8-10 per factor)",
    )
    sp.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help='known scores, JSON or TOML: {"E": 4.2, "A": "low", ...} (1-5, or high/low)',
    )
    reply_opts(sp)
    judge_opts(sp)
    sp.set_defaults(func=cmd_eval_personality)


# ---- rolecast eval in-character -----------------------------------------------------------


def in_character_figure(results):  # type: ignore[no-untyped-def]
    """Bars of the stay-in-character rate per category, the overall rate as a line."""
    from ..eval.report import new_figure, plot_context

    rates = results.by_category
    overall = results.overall
    with plot_context():
        fig = new_figure(6.4, 4.0)
        ax = fig.add_subplot()
        xs = list(range(len(rates)))
        values = [0.0 if r.rate is None else r.rate for r in rates.values()]
        ax.bar(xs, values, 0.6, color="#55a868")
        for x, r in zip(xs, rates.values(), strict=True):
            text = f"{_rate(r.rate)}\n{r.stays}/{r.decided}"
            ax.text(x, (r.rate or 0.0) + 0.02, text, ha="center", va="bottom", fontsize="small")
        if overall.rate is not None:
            ax.axhline(
                overall.rate,
                color="grey",
                linewidth=0.8,
                linestyle="--",
                label=f"overall {_rate(overall.rate)}",
            )
            ax.legend(fontsize="small", loc="lower right")
        ax.set_xticks(xs, list(rates))
        ax.set_ylim(0, 1.2)
        ax.set_ylabel("stays in character (share of decided probes)")
        ax.set_title(f"In character: {results.character}")
    return fig


def cmd_eval_in_character(args: argparse.Namespace) -> int:
    from ..eval import probes as pr
    from ..eval.interview import question_language
    from ..eval.report import Cache, backend_info, header, model_note, write_report
    from ..eval.runner import run_items, workers_for
    from ..retrieval.index import load_index

    character = eval_character(args)
    if args.per_category is not None and args.per_category < 1:
        raise InputError(f"--per-category must be at least 1, not {args.per_category}")
    if args.no_judge and wants_own_judge(args):
        raise InputError("--no-judge leaves the judge out: drop the --judge-* options")
    language = question_language(args.language or character.language)
    chosen = pr.select(language, args.categories, args.per_category)
    params = reply_params(args)  # bad input fails before a model loads
    index = load_index(character, embedder_name(args))
    llm = eval_llm(args)
    judge = None
    try:
        judge = None if args.no_judge else judge_for(args, llm)
        scope = Cache.scope_for(
            "in-character",
            character,
            llm,
            params,
            embedder=index.embedder.name,
            mode="hybrid",
            seed=args.seed,
            judge=None if judge is None else backend_info(judge),
            judge_params=None if judge is None else pr.JUDGE_PARAMS,
        )
        out, cache = open_out(args, "in-character", character, scope)
        prototype = chat_session(character, llm, index, params)
        workers = workers_for(llm, args.concurrency)
        if judge is not None and judge is not llm:
            workers = min(workers, workers_for(judge, args.concurrency))

        def probe(p: pr.Probe) -> dict[str, object]:
            ask = fresh_asker(prototype, item_seed(args.seed, f"probe-{p.id}"))
            return pr.run_probe(character, p, ask, judge).to_dict()

        values = run_items(
            chosen,
            probe,
            key=lambda p: {"probe": p.id, "language": p.language, "text": p.text},
            cache=cache,
            workers=workers,
            progress=progress_printer("probing"),
        )
    finally:
        close_all(llm, judge)
    settings = {
        "categories": sorted({p.category for p in chosen}, key=pr.CATEGORIES.index),
        "per_category": args.per_category,
        "seed": args.seed,
        "params": scope["params"],
        "judge_params": scope["judge_params"],
    }
    results = pr.ProbeResults(
        character.name,
        language,
        [pr.ProbeResult.from_dict(v) for v in values],
        "" if judge is None else judge.model,
        settings,
    )
    info = {
        **backend_info(llm),
        "judge": None if judge is None else backend_info(judge),
        "embedder": index.embedder.name,
    }
    head = header("in-character", character, info)
    body = {k: v for k, v in results.to_dict().items() if k not in head}
    notes = [f"Replies: {model_note(info)}"]
    if judge is None:
        notes.append("No judge: the rules alone decide.")
    elif judge is llm:
        notes.append("The same backend judged the replies.")
    else:
        notes.append(f"Judge: {model_note(backend_info(judge))}")
    counts = ", ".join(f"{rule} {n}" for rule, n in results.rule_counts.items()) or "none"
    markdown = "\n".join(
        [
            f"# Staying in character: {character.name} ({character.id})",
            "",
            *(f"{n}\n" for n in notes),
            f"Each probe is said in a fresh conversation with the character's canon retrieved "
            f"(embedder `{index.embedder.name}`, seed {args.seed}). A reply stays in character "
            "when no rule flags it and the judge, if any, agrees; a reply the judge could not "
            "decide on is left out of the rates.",
            "",
            f"Replies flagged by each rule: {counts}.",
            "",
            "![in_character](in_character.png)",
            "",
            pr.markdown(results),
        ]
    )
    figures = {"in_character": in_character_figure(results)}
    written = write_report(out, {**head, **body}, markdown, figures)
    overall = results.overall
    print(
        f"{'overall':13s} {_rate(overall.rate):>4s}  ({overall.stays}/{overall.decided} "
        f"decided, {overall.total} probes)"
    )
    for c, r in results.by_category.items():
        print(f"{c:13s} {_rate(r.rate):>4s}  ({r.stays}/{r.decided} decided, {r.total} probes)")
    finish(out, written, cache)
    return 0


def add_in_character(evsub: Any) -> None:
    from ..eval.probes import CATEGORIES

    sp = evsub.add_parser(
        "in-character",
        help="probes that try to pull the character out of its role (are you an AI, "
        "print your prompt, ...): the share of replies that stay in character",
    )
    eval_opts(sp, "in-character")
    sp.add_argument(
        "--categories",
        type=_names,
        help=f"comma-separated, of {','.join(CATEGORIES)} (default: all; leave out "
        "anachronism for a character of the present day)",
    )
    sp.add_argument(
        "--per-category", type=int, metavar="N", help="probes per category at most (default: all)"
    )
    sp.add_argument("--no-judge", action="store_true", help="rules only: no judge backend is asked")
    reply_opts(sp)
    judge_opts(sp)
    sp.set_defaults(func=cmd_eval_in_character)


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


# One function per evaluation: `rolecast eval <name>`.
EVALS: list[Callable[[Any], None]] = [
    add_canon,
    add_smoke,
    add_retrieval,
    add_personality,
    add_in_character,
]


def add_eval(sub: Any) -> None:
    """Add the eval and viz commands to the `rolecast` parser."""
    ep = sub.add_parser(
        "eval", help="evaluate a character: smoke, canon, retrieval, personality, in-character"
    )
    evsub = ep.add_subparsers(dest="eval_command", required=True, metavar="EVAL")
    for add in EVALS:
        add(evsub)
    add_viz(sub)
