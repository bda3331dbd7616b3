"""`rolecast eval ...`: measure how well a character is played.

Each evaluation is one sub-command of `rolecast eval`, added by one function in ``EVALS``
that takes the `eval` sub-parsers. A command only reads its options, opens what they name
and prints: the evaluation runs in ``rolecast.eval`` (``run_*_eval``, its cache scope and
its report). The helpers below give each the same options (``eval_opts``), backends
(``eval_backends``), out dir and cache (``open_out``) and closing lines (``finish``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .common import (
    backend_opts,
    character_from,
    embedder_from,
    finish,
    items_progress,
    load_character,
    open_llm,
    trait_opts,
)

if TYPE_CHECKING:
    from ..backends.base import LLM, GenerationParams
    from ..character.model import Character
    from ..eval.report import Cache
    from ..retrieval.hybrid import CanonIndex
    from ..session import Session


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
    trait_opts(sp)
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


def eval_llm(args: argparse.Namespace, prefix: str = "", **options: Any) -> LLM:
    """The backend chosen by ``--backend``/``--model``/``--base-url``/``--api-key`` (as
    `rolecast chat` chooses it); ``prefix="judge_"`` reads the ``--judge-*`` options first
    (see :func:`common.backend_from`). ``options`` go to the backend when it takes them."""
    if getattr(args, "context_window", None):
        options = {"n_ctx": args.context_window, "context_window": args.context_window, **options}
    return open_llm(args, prefix, **options)


@contextmanager
def eval_backends(
    args: argparse.Namespace, judge: bool = False
) -> Iterator[tuple[LLM, LLM | None]]:
    """The character's backend and, with ``judge``, the judge's: one of its own when a
    ``--judge-*`` option is given, else the same object (a model is never loaded twice).
    Both are closed, once each, on the way out."""
    llm = eval_llm(args)
    other: LLM | None = None
    try:
        other = (
            (eval_llm(args, prefix="judge_") if wants_own_judge(args) else llm) if judge else None
        )
        yield llm, other
    finally:
        llm.close()
        if other is not None and other is not llm:
            other.close()


def open_out(
    args: argparse.Namespace, eval_name: str, character: Character, scope: dict[str, Any]
) -> tuple[Path, Cache]:
    """The out dir (created) and its cache for ``scope``."""
    from ..eval.report import check_out_dir, default_out_dir, open_cache

    out = check_out_dir(args.out or default_out_dir(eval_name, character.id))
    return out, open_cache(out, scope, fresh=args.fresh)


def with_head(head: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """``results.json``: the header, then the result's own fields."""
    return {**head, **{k: v for k, v in result.items() if k not in head}}


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


def reply_opts(
    sp: argparse.ArgumentParser,
    max_tokens: int = REPLY_MAX_TOKENS,
    temperature: float = REPLY_TEMPERATURE,
    language: bool = True,
) -> None:
    """``--max-tokens`` and ``--temperature`` of the character's replies, and with
    ``language`` the ``--language`` of the questions."""
    if language:
        sp.add_argument(
            "--language",
            choices=("zh", "en"),
            help="language of the questions (default: the character's; zh for a Chinese "
            "character, else en)",
        )
    sp.add_argument(
        "--max-tokens",
        type=int,
        default=max_tokens,
        help=f"reply length limit (default {max_tokens})",
    )
    sp.add_argument(
        "--temperature",
        type=float,
        default=temperature,
        help=f"sampling temperature (default {temperature})",
    )


def wants_own_judge(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) is not None for name in JUDGE_OPTIONS)


def reply_params(args: argparse.Namespace) -> GenerationParams:
    from ..backends.base import GenerationParams

    if args.max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1, not {args.max_tokens}")
    return GenerationParams(max_tokens=args.max_tokens, temperature=args.temperature)


def chat_session(
    character: Character, llm: LLM, index: CanonIndex, params: GenerationParams
) -> Session:
    """The character's normal chat setup, retrieval on: the prototype of every item's
    session (as the canon condition of `eval canon` builds it)."""
    from ..eval.canon import condition_session

    return condition_session("canon", character, llm, index, params)


# ---- rolecast eval canon ------------------------------------------------------------------


def cmd_eval_canon(args: argparse.Namespace) -> int:
    from ..eval import canon
    from ..eval.report import header, model_note, scope_info, write_report
    from ..eval.runner import workers_for
    from ..retrieval.index import load_index

    character = character_from(args)
    if args.n < 1:
        raise InputError(f"--n must be at least 1, not {args.n}")
    adapter, scenes = None, None
    if args.lora:  # the tuned model against its base, on the scenes its dataset held out
        from ..training.adapter import open_adapter

        adapter = open_adapter(args.lora)
        scenes = canon.check_tuned(character, adapter)
    canon.sample_turns(character, args.n, args.seed, scenes)  # bad input: before a model loads
    default = ["canon"] if adapter else canon.CONDITIONS
    conditions = canon.check_conditions(args.conditions or default)
    params = reply_params(args)
    index = load_index(character, embedder_from(args))
    base_args = argparse.Namespace(**{**vars(args), "lora": None})
    with eval_backends(base_args) as (llm, _), ExitStack() as stack:
        tuned = None
        if adapter is not None:
            tuned = eval_llm(args)
            stack.callback(tuned.close)
        order = args.order or llm.prompt_order
        scope = canon.canon_scope(
            character, llm, params, index.embedder.name, args.mode, order, tuned
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
            progress=items_progress("generating"),
            tuned=tuned,
            scenes=scenes,
        )
    info = scope_info(scope)
    head = {
        **header("canon", character, info),
        "n": args.n,
        "seed": args.seed,
        "params": scope["params"],
    }
    if adapter is not None:
        head["tuned"] = str(adapter.folder)
        head["held_out_scenes"] = len(scenes or ())
    figures = canon.canon_figures(result)
    markdown = canon.canon_markdown(result, head, model_note(info), list(figures))
    written = write_report(out, {**head, **result.to_dict()}, markdown, figures)
    print("\n".join(canon.summary_lines(result)))
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
        help=f"comma-separated, of {','.join(CONDITIONS)} (default: all three; canon with --lora)",
    )
    sp.add_argument(
        "--mode",
        choices=("hybrid", "dense", "lexical"),
        default="hybrid",
        help="retrieval mode of the canon condition (default hybrid)",
    )
    order_opt(sp)
    reply_opts(sp, DEFAULT_PARAMS.max_tokens, DEFAULT_PARAMS.temperature, language=False)
    sp.set_defaults(func=cmd_eval_canon)


# ---- rolecast eval smoke ------------------------------------------------------------------


def cmd_eval_smoke(args: argparse.Namespace) -> int:
    from ..eval import smoke
    from ..eval.report import header, model_note, scope_info, write_report
    from ..memory import Memory
    from ..retrieval.index import load_index
    from ..session import Session

    character = character_from(args)
    chats = smoke.read_battery(args.lines) if args.lines else None  # bad input: before the model
    index = load_index(character, embedder_from(args))
    with eval_backends(args) as (llm, _):
        prototype = Session(character, index, llm, order=args.order or llm.prompt_order)
        if not args.no_memory:  # as `rolecast chat` has it
            prototype.memory = Memory(index.embedder)
        scope = smoke.smoke_scope(prototype)
        out, cache = open_out(args, "smoke", character, scope)
        result = smoke.run_smoke_eval(
            prototype, chats, seed=args.seed, cache=cache, progress=items_progress("chatting")
        )
    info = scope_info(scope)
    head = {**header("smoke", character, info), "seed": args.seed, "params": scope["params"]}
    markdown = smoke.smoke_markdown(result, head, model_note(info))
    written = write_report(out, {**head, **result.to_dict()}, markdown)
    print("\n".join(smoke.summary_lines(result)))
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
        "--no-memory",
        action="store_true",
        help="chat without memory (summary, recall), as `rolecast chat --no-memory`",
    )
    sp.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    sp.set_defaults(func=cmd_eval_smoke)


# ---- rolecast eval retrieval --------------------------------------------------------------


def cmd_eval_retrieval(args: argparse.Namespace) -> int:
    from ..eval import retrieval
    from ..eval.report import Cache, header, model_note, open_cache, scope_info, write_report
    from ..eval.runner import workers_for

    character = character_from(args)
    queries = retrieval.sample_queries(character, args.n, args.seed)
    retrieval.check_paraphrases(args.paraphrases, queries)
    names = args.embedders or [embedder_from(args)]
    out, _ = open_out(args, "retrieval", character, {})
    info: dict[str, Any] = {"backend": None, "model": None}
    cache, dropped = None, 0
    if args.paraphrases:
        with eval_backends(args) as (llm, _):
            params = retrieval.PARAPHRASE_PARAMS
            scope = Cache.scope_for("paraphrase", None, llm, params, language=character.language)
            info = scope_info(scope)
            cache = open_cache(out, scope, fresh=args.fresh)
            made, dropped = retrieval.paraphrase_queries(
                queries,
                llm,
                character.language,
                args.paraphrases,
                cache=cache,
                workers=workers_for(llm, args.concurrency),
                progress=items_progress("paraphrasing"),
                params=params,
                seed=args.seed,
            )
        queries = queries + made
    indexes, seconds = retrieval.load_indexes(character, names)
    result = retrieval.run_retrieval_eval(indexes, queries, args.k, args.seed)
    if dropped:
        result.notes.append(f"{dropped} paraphrases were empty or repeated the line: left out")
    head = {
        **header("retrieval", character, info),
        "seed": args.seed,
        "scenes": len(character.scenes),
        "embedders": names,
        "index_load_seconds": seconds,
    }
    figures = retrieval.retrieval_figures(result)
    markdown = retrieval.retrieval_markdown(result, head, model_note(info), list(figures))
    written = write_report(out, {**head, **result.to_dict()}, markdown, figures)
    print("\n".join(retrieval.summary_lines(result)))
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


def interview_items(args: argparse.Namespace) -> list[Any]:
    """``--items``: the first N BFI items of each factor (all 44 when not given)."""
    from ..eval import interview as iv

    if args.items is not None and args.items < 1:
        raise InputError(f"--items must be at least 1, not {args.items}")
    return iv.items_for(per_factor=args.items)


def items_opt(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--items",
        type=int,
        metavar="N",
        help="items per factor, the first N of each (default: all 44, 8-10 per factor)",
    )


@dataclass
class Interview:
    """What an interview of a character runs with: its language, canon index, backends and
    chat setup (the prototype of every item's session), the out dir and the two caches
    (answers, ratings)."""

    language: str
    index: CanonIndex
    llm: LLM
    judge: LLM
    prototype: Session
    out: Path
    cache: Cache
    judge_cache: Cache
    workers: int  # items at once: the character's backend, the judge's
    judge_workers: int

    def info(self) -> dict[str, Any]:
        from ..eval.report import backend_info

        judge = backend_info(self.judge)
        return {**backend_info(self.llm), "judge": judge, "embedder": self.index.embedder.name}


@contextmanager
def interview(
    args: argparse.Namespace, character: Character, eval_name: str
) -> Iterator[Interview]:
    """The setup ``eval personality`` and ``eval dials`` share: the questions' language and
    the reply parameters checked before a model loads, then the canon index, the backends
    (closed on the way out), the out dir and the caches."""
    from ..eval import interview as iv
    from ..eval.report import open_cache
    from ..eval.runner import workers_for
    from ..retrieval.index import load_index

    language = iv.question_language(args.language or character.language)
    params = reply_params(args)  # bad input fails before a model loads
    index = load_index(character, embedder_from(args))
    with eval_backends(args, judge=True) as (llm, judge):
        assert judge is not None
        scope, judge_scope = iv.personality_scopes(
            character, llm, judge, params, index.embedder.name, language, args.seed
        )
        out, cache = open_out(args, eval_name, character, scope)
        yield Interview(
            language,
            index,
            llm,
            judge,
            chat_session(character, llm, index, params),
            out,
            cache,
            open_cache(out, judge_scope, fresh=args.fresh),
            workers_for(llm, args.concurrency),
            workers_for(judge, args.concurrency),
        )


def cmd_eval_personality(args: argparse.Namespace) -> int:
    from ..eval import interview as iv
    from ..eval.report import header, write_report

    character = character_from(args)
    items = interview_items(args)
    if args.role is not None and args.labels is None:
        raise InputError("--role picks a role of a --labels file: give the file too")
    labels = iv.read_labels(args.labels, args.role) if args.labels is not None else None
    with interview(args, character, "personality") as run:
        result = iv.run_personality_eval(
            run.prototype,
            run.judge,
            items=items,
            language=run.language,
            labels=labels,
            seed=args.seed,
            cache=run.cache,
            judge_cache=run.judge_cache,
            progress=items_progress("interviewing"),
            workers=run.workers,
            judge_workers=run.judge_workers,
        )
    labels_file = None if args.labels is None else str(args.labels)
    result.meta.update(items_per_factor=args.items, labels_file=labels_file)
    head = header("personality", character, run.info())
    markdown, figures = iv.personality_report(result, head, labels)
    written = write_report(run.out, with_head(head, result.to_dict()), markdown, figures)
    print("\n".join(iv.summary_lines(result)))
    finish(run.out, written, run.cache, run.judge_cache)
    return 0


def add_personality(evsub: Any) -> None:
    sp = evsub.add_parser(
        "personality",
        help="Big Five interview: the 44 BFI items as open questions, each answer rated "
        "by a judge; factor scores, compared with labels when given",
    )
    eval_opts(sp, "personality")
    items_opt(sp)
    sp.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help='known scores, JSON or TOML: {"E": 4.2, "A": "low", ...} (1-5, or high/low), '
        "or an InCharacter label file with --role",
    )
    sp.add_argument(
        "--role",
        metavar="ROLE",
        help="the role of an InCharacter label file to score against, e.g. haruhi-zh (its "
        "H/L dimensions count for high/low accuracy, X ones only for the error)",
    )
    reply_opts(sp)
    judge_opts(sp)
    sp.set_defaults(func=cmd_eval_personality)


# ---- rolecast eval dials ------------------------------------------------------------------


def dial_factor(specs: list[str]) -> tuple[str, dict[str, int]]:
    """``--trait`` of ``eval dials``: one factor named alone (the one dialled low and high),
    and any ``FACTOR=LEVEL`` held fixed in both conditions."""
    from ..character.personality import parse_trait_names, parse_traits

    named = parse_trait_names([s for s in specs if "=" not in s])
    fixed = parse_traits([s for s in specs if "=" in s])
    if len(named) != 1:
        raise InputError(
            "eval dials takes one factor to dial, named alone: --trait O "
            f"(given: {', '.join(named) or 'none'}); FACTOR=LEVEL holds another one fixed"
        )
    if named[0] in fixed:
        raise InputError(f"--trait {named[0]} is dialled low and high: it cannot also be fixed")
    return named[0], fixed


def cmd_eval_dials(args: argparse.Namespace) -> int:
    from ..character.personality import with_dials
    from ..eval import dials as dl
    from ..eval.report import header, write_report

    factor, fixed = dial_factor(args.trait or [])
    character = with_dials(load_character(args.name), fixed)
    items = interview_items(args)
    if args.essays < 0:
        raise InputError(f"--essays must not be negative, not {args.essays}")
    with interview(args, character, f"dials-{factor}") as run:
        result = dl.run_dials_eval(
            run.prototype,
            run.judge,
            factor,
            items=items,
            language=run.language,
            seed=args.seed,
            essays=args.essays,
            topic=args.topic,
            essay_dir=run.out,
            essay_tokens=args.essay_tokens,
            cache=run.cache,
            judge_cache=run.judge_cache,
            fresh=args.fresh,
            progress=items_progress("dialling"),
            workers=run.workers,
            judge_workers=run.judge_workers,
        )
    head = header("dials", character, run.info())
    markdown, figures = dl.dials_report(result, head)
    written = write_report(run.out, with_head(head, result.to_dict()), markdown, figures)
    for f, shift in result.shifts.items():
        d = shift.difference
        mark = "  <- dialled" if f == factor else ""
        print(
            f"{f}: shift {d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}] over {d.n} items, "
            f"moved {shift.moved}{mark}"
        )
    if result.sorted:
        k, n, (lo, hi) = result.accuracy
        print(f"essays sorted blind: {k}/{n} right ({lo:.0%} to {hi:.0%})")
    finish(run.out, written, run.cache, run.judge_cache)
    return 0


def add_dials(evsub: Any) -> None:
    sp = evsub.add_parser(
        "dials",
        help="does a Big Five dial move what it should? the interview with one factor "
        "dialled low and high (same items, same seeds): each factor's shift with intervals; "
        "essays under each dial sorted blind by a judge",
    )
    eval_opts(sp, "dials-<factor>")
    items_opt(sp)
    sp.add_argument(
        "--essays",
        type=int,
        default=3,
        metavar="N",
        help="essays written under each dial and sorted blind (default 3; 0: none)",
    )
    sp.add_argument("--topic", help="the essays' topic (default: a gaokao-style one)")
    sp.add_argument(
        "--essay-tokens", type=int, metavar="N", help="longest essay in tokens (default 1600)"
    )
    reply_opts(sp)
    judge_opts(sp)
    sp.set_defaults(func=cmd_eval_dials)


# ---- rolecast eval in-character -----------------------------------------------------------


def cmd_eval_in_character(args: argparse.Namespace) -> int:
    from ..eval import probes as pr
    from ..eval.interview import question_language
    from ..eval.report import backend_info, header, write_report
    from ..eval.runner import workers_for
    from ..retrieval.index import load_index

    character = character_from(args)
    if args.per_category is not None and args.per_category < 1:
        raise InputError(f"--per-category must be at least 1, not {args.per_category}")
    if args.no_judge and wants_own_judge(args):
        raise InputError("--no-judge leaves the judge out: drop the --judge-* options")
    language = question_language(args.language or character.language)
    chosen = pr.select(language, args.categories, args.per_category)
    params = reply_params(args)  # bad input fails before a model loads
    index = load_index(character, embedder_from(args))
    with eval_backends(args, judge=not args.no_judge) as (llm, judge):
        scope = pr.in_character_scope(character, llm, judge, params, index.embedder.name, args.seed)
        out, cache = open_out(args, "in-character", character, scope)
        workers = workers_for(llm, args.concurrency)
        if judge is not None:
            workers = min(workers, workers_for(judge, args.concurrency))
        results = pr.run_in_character_eval(
            chat_session(character, llm, index, params),
            judge,
            probes=chosen,
            seed=args.seed,
            cache=cache,
            workers=workers,
            progress=items_progress("probing"),
        )
    results.meta["per_category"] = args.per_category
    info = {**backend_info(llm), "judge": scope["judge"], "embedder": index.embedder.name}
    head = header("in-character", character, info)
    markdown, figures = pr.in_character_report(results, head)
    written = write_report(out, with_head(head, results.to_dict()), markdown, figures)
    print("\n".join(pr.summary_lines(results)))
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


# One function per evaluation: `rolecast eval <name>`.
EVALS: list[Callable[[Any], None]] = [
    add_canon,
    add_smoke,
    add_retrieval,
    add_personality,
    add_dials,
    add_in_character,
]


def add_eval(sub: Any) -> None:
    """Add the eval command to the `rolecast` parser."""
    ep = sub.add_parser(
        "eval",
        help="evaluate a character: smoke, canon, retrieval, personality, dials, in-character",
    )
    evsub = ep.add_subparsers(dest="eval_command", required=True, metavar="EVAL")
    for add in EVALS:
        add(evsub)
