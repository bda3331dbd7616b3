"""The canon half of the conversation gate: does the retrieved canon make replies closer to
the original lines than the persona alone, pooled over several corpus characters?

    ROLECAST_CORPUS=/path/to/chatharuhi python benchmarks/bench_canon_gate.py \
        [--characters haruhi,liyunlong,Sheldon] [--n 20] [--order O] [--canon-budget N]
        [--model M] [--out DIR]

Each character runs `rolecast eval canon` (conditions canon and persona, the chat's prompt
order, the default local model) on ``--n`` held-out turns; the per-turn scores of all
characters are then pooled and the paired difference canon - persona is given with its 95 %
bootstrap interval for each metric. The gate wants chrF's interval above 0. Results and
caches go to ``--out`` (default ``./bench-canon-gate``): an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default=os.environ.get("ROLECAST_CORPUS"))
    p.add_argument("--characters", default="haruhi,liyunlong,Sheldon")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--model", default=None)
    p.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: all)")
    p.add_argument("--order", default=None, help="prompt order (default: the backend's, as chat)")
    p.add_argument(
        "--canon-budget", type=int, default=None, help="tokens of canon (default: the backend's)"
    )
    p.add_argument("--out", type=Path, default=Path("bench-canon-gate"))
    args = p.parse_args(argv)
    if not args.corpus:
        p.error("set ROLECAST_CORPUS or pass --corpus")
    home = Path(tempfile.mkdtemp(prefix="rolecast-bench-canon-"))
    os.environ["ROLECAST_HOME"] = str(home)
    from rolecast.backends.base import get_llm
    from rolecast.eval import canon
    from rolecast.eval.report import Cache
    from rolecast.formats.chatharuhi import import_story_folder
    from rolecast.retrieval.index import load_index

    pooled: dict[str, dict[str, list[float]]] = {}
    per_character: dict[str, dict[str, str]] = {}
    started = time.perf_counter()
    try:
        llm = get_llm("local", model=args.model, n_threads=args.threads)
        if args.canon_budget is not None:
            llm.canon_budget = args.canon_budget  # type: ignore[misc]
        order = args.order or llm.prompt_order
        for name in args.characters.split(","):
            c = import_story_folder(Path(args.corpus) / "characters" / name).character
            index = load_index(c, "use")
            scope = Cache.scope_for(
                "canon", c, llm, canon.DEFAULT_PARAMS, order=order, mode="hybrid"
            )
            cache = Cache(args.out / c.id / "cache", scope)
            result = canon.run_canon_eval(
                c,
                llm,
                index.embedder,
                index,
                n=args.n,
                conditions=("canon", "persona"),
                order=order,
                cache=cache,
            )
            (args.out / c.id).mkdir(parents=True, exist_ok=True)
            (args.out / c.id / "results.json").write_text(
                json.dumps(result.to_dict(), ensure_ascii=False, indent=1), "utf-8"
            )
            for cond, scores in result.scores.items():
                for metric, values in scores.items():
                    pooled.setdefault(cond, {}).setdefault(metric, []).extend(values)
            per_character[c.id] = {
                m: str(result.differences["canon - persona"][m]) for m in canon.METRICS
            }
            print(f"done {c.id}: {per_character[c.id]}", file=sys.stderr, flush=True)
        llm.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    summary, differences = canon.summarise(pooled)
    took = time.perf_counter() - started
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"# canon vs persona, pooled, order {order} ({when}, {took:.0f} s)\n")
    print("| | " + " | ".join(canon.METRICS) + " |")
    print("|---|" + "---|" * len(canon.METRICS))
    for cond in summary:
        print(f"| {cond} | " + " | ".join(str(summary[cond][m]) for m in canon.METRICS) + " |")
    diff = differences["canon - persona"]
    print("| canon - persona, pooled | " + " | ".join(str(diff[m]) for m in canon.METRICS) + " |")
    for cid, d in per_character.items():
        print(f"| canon - persona, {cid} | " + " | ".join(d[m] for m in canon.METRICS) + " |")
    n = len(next(iter(pooled["canon"].values())))
    verdict = "passes" if diff["chrf"].low > 0 else "fails"
    print(f"\n{n} turns pooled; chrF interval {diff['chrf']}: the gate {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
