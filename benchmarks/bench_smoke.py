"""The conversation gate over several characters and settings, with the default model.

    ROLECAST_CORPUS=/path/to/chatharuhi python benchmarks/bench_smoke.py \
        [--characters xiaoman,haruhi,Sheldon] [--settings cache,split] [--out DIR]

Each (setting, character) runs `rolecast eval smoke` in process: the built-in battery of the
character's language (2 chats of 8 lines), the chat's own defaults otherwise. A setting is a
prompt order, optionally with ``:canon=N`` / ``:history=N`` (budgets, tokens) and
``:presence=F`` / ``:frequency=F`` / ``:repeat=F`` / ``:temperature=F`` (sampling), e.g.
``split:canon=800:frequency=0.3``; a final ``:dressed`` sends the user's lines in the
canon's ``Name:「line」`` form, as before the bare form was chosen. Corpus characters are
imported from their ChatHaruhi story folders into a temporary ROLECAST_HOME. Results and
caches go to ``--out`` (default ``./bench-smoke``), so an interrupted run resumes; the table
is printed as Markdown: failures per setting and character, the pooled shares against the
gate's targets, and the median seconds per turn.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHORT = {
    "empty": "empty",
    "leak": "leak",
    "repeat": "rep",
    "refusal": "refuse",
    "assistant_talk": "asst",
    "canon_copy": "copy",
    "other_speaker": "other",
    "wrong_language": "lang",
    "over_long": "long",
}


BUDGETS = ("canon", "history")  # token budgets
PENALTIES = {
    "presence": "presence_penalty",
    "frequency": "frequency_penalty",
    "repeat": "repeat_penalty",
    "temperature": "temperature",
}


def parse_setting(text: str) -> tuple[str, dict[str, int], dict[str, float]]:
    order, *opts = [o for o in text.split(":") if o != "dressed"]
    budget: dict[str, int] = {}
    params: dict[str, float] = {}
    for opt in opts:
        key, _, value = opt.partition("=")
        try:
            if key in BUDGETS:
                budget[key] = int(value)
            elif key in PENALTIES:
                params[PENALTIES[key]] = float(value)
            else:
                raise ValueError(key)
        except ValueError:
            raise SystemExit(
                f"bad setting option {opt!r} in {text!r}: one of "
                f"{', '.join(f'{k}=N' for k in (*BUDGETS, *PENALTIES))}"
            ) from None
    return order, budget, params


def load_characters(names: list[str], corpus: str | None, home: Path):  # type: ignore[no-untyped-def]
    from rolecast.character import store
    from rolecast.formats.chatharuhi import import_story_folder

    out = []
    for name in names:
        folder = Path(corpus) / "characters" / name if corpus else None
        if folder is not None and folder.is_dir():
            out.append(import_story_folder(folder).character)
        else:
            out.append(store.load(name))
    return out


def run_one(c, llm, setting, order, budget, params, folder, args):  # type: ignore[no-untyped-def]
    """One (setting, character) through the gate with the model, cached in ``folder``."""
    from rolecast.eval import smoke
    from rolecast.eval.report import Cache, character_digest
    from rolecast.prompt.assemble import Budget
    from rolecast.retrieval.index import load_index
    from rolecast.session import Session

    index = load_index(c, "use")
    session = Session(c, index, llm, order=order)
    if budget:
        session.budget = replace(session.budget or Budget(), **budget)
    if params:
        session.params = replace(session.params, **params)
    scope = {
        "bench": "smoke",
        "setting": setting,
        "character": character_digest(c),
        "model": llm.model,
        "params": repr(session.params),
        "budget": repr(session.budget),
    }
    cache = Cache(folder / "cache", scope)
    started = time.perf_counter()
    chats = smoke.builtin_battery(c.language)[: args.chats]
    result = smoke.run_smoke_eval(session, chats, seed=args.seed, cache=cache)
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default=os.environ.get("ROLECAST_CORPUS"))
    p.add_argument("--characters", default="xiaoman,haruhi,Sheldon")
    p.add_argument("--settings", default="cache,split")
    p.add_argument("--model", default=None, help="local model (default: the default model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chats", type=int, default=None, help="chats of the battery (default all)")
    p.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: all)")
    p.add_argument("--out", type=Path, default=Path("bench-smoke"))
    p.add_argument("--json", type=Path, help="also write the table's figures as JSON")
    p.add_argument(
        "--rescore",
        action="store_true",
        help="check the replies saved in --out again with today's checks; no model runs",
    )
    args = p.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="rolecast-bench-smoke-"))
    os.environ["ROLECAST_HOME"] = str(home)
    from rolecast.backends.base import get_llm
    from rolecast.eval import smoke
    from rolecast.eval.report import write_report

    rows: list[dict[str, object]] = []
    try:
        characters = load_characters(args.characters.split(","), args.corpus, home)
        llm = None if args.rescore else get_llm("local", model=args.model, n_threads=args.threads)
        for setting in args.settings.split(","):
            order, budget, params = parse_setting(setting)
            # the module itself (rolecast.prompt exports a function of the same name)
            assemble_module = importlib.import_module("rolecast.prompt.assemble")
            assemble_module.BARE_USER_LINES = not setting.endswith(":dressed")
            pooled = dict.fromkeys(smoke.FAILURES, 0)
            total = 0
            secs: list[float] = []
            for c in characters:
                folder = args.out / setting.replace(":", "_").replace("=", "") / c.id
                if args.rescore:  # the same replies, today's checks: a before/after on one scale
                    saved = json.loads((folder / "results.json").read_text("utf-8"))
                    chats = [
                        [smoke.SmokeLine(t["category"], t["line"]) for t in chat]
                        for chat in saved["chats"]
                    ]
                    values = [{"turns": chat} for chat in saved["chats"]]
                    result, took = smoke.score_chats(c, chats, values), 0.0
                    model = saved.get("model", "")
                else:
                    assert llm is not None
                    result, took = run_one(c, llm, setting, order, budget, params, folder, args)
                    model = llm.model
                head = {
                    "character": {"id": c.id, "name": c.name},
                    "order": order,
                    "seed": args.seed,
                }
                write_report(
                    folder,
                    {**head, "setting": setting, "model": model, **result.to_dict()},
                    smoke.smoke_markdown(result, head, f"setting `{setting}`, model {model}"),
                )
                for k, v in result.counts.items():
                    pooled[k] += v
                total += result.total
                turn_s = [t["seconds"] for chat in result.replies for t in chat]
                secs += turn_s
                rows.append(
                    {
                        "setting": setting,
                        "character": c.id,
                        "replies": result.total,
                        "clean": result.clean,
                        **result.counts,
                        "median_turn_s": round(statistics.median(turn_s), 2),
                        "wall_s": round(took, 1),
                    }
                )
                print(f"done {setting} {c.id}: {result.counts}", file=sys.stderr, flush=True)
            passed = all(pooled[k] / total <= limit + 1e-12 for k, limit in smoke.TARGETS.items())
            rows.append(
                {
                    "setting": setting,
                    "character": "**all**",
                    "replies": total,
                    "clean": sum(
                        r["clean"]
                        for r in rows
                        if r["setting"] == setting  # type: ignore[misc]
                        and r["character"] != "**all**"
                    ),
                    **pooled,
                    "median_turn_s": round(statistics.median(secs), 2) if secs else None,
                    "passed": passed,
                }
            )
        if llm is not None:
            llm.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(
        f"# rolecast conversation gate ({time.strftime('%Y-%m-%d %H:%M')}, nproc "
        f"{os.cpu_count()}, seed {args.seed})\n"
    )
    heads = [
        "setting",
        "character",
        "replies",
        "clean",
        *(SHORT[k] for k in smoke.FAILURES),
        "median turn s",
        "gate",
    ]
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for r in rows:
        cells = [
            r["setting"],
            r["character"],
            r["replies"],
            r["clean"],
            *(r[k] for k in smoke.FAILURES),
            r["median_turn_s"],
            ("pass" if r["passed"] else "fail") if "passed" in r else "",
        ]
        print("| " + " | ".join(str(x) for x in cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
