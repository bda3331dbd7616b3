"""Where a generated line stops saying the same thing as another: the near-duplicate
threshold of ``rolecast augment`` (``questions.DUPLICATE_COSINE``), looked at on real
generated questions.

The lines are the user's lines of ChatHaruhi's generated dialogue sets in
``$ROLECAST_CORPUS/kyon_generator`` (questions written by a model from canon examples, the way
augment writes them). Each is embedded by the embedder augment uses; for every line, its
nearest earlier line. The script prints

1. how many lines a keeper would drop at each threshold (lines taken in file order, each
   checked against those kept before it), and
2. random pairs (seeded) in each cosine band, for a person to read and say where "the same
   question" ends: the figure is chosen from that reading, not from a formula.

    ROLECAST_CORPUS=../shared/corpus/chatharuhi \\
        .venv/bin/python benchmarks/tune_duplicates.py --pattern 'haruhi*' --pairs 8
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

THRESHOLDS = (0.8, 0.85, 0.88, 0.9, 0.92, 0.95)
BANDS = ((0.75, 0.8), (0.8, 0.85), (0.85, 0.9), (0.9, 0.95), (0.95, 1.01))


def user_lines(folder: Path, pattern: str) -> list[str]:
    """The first line of each generated dialogue (the question asked), exact repeats out."""
    seen: dict[str, None] = {}
    for path in sorted(folder.glob(f"organized_data*/{pattern}.jsonl")):
        for raw in path.read_text(encoding="utf-8").splitlines():
            try:
                turns = json.loads(raw).get("dialogue") or []
            except ValueError:
                continue
            if turns and isinstance(turns[0], dict) and (text := str(turns[0].get("text", ""))):
                seen.setdefault(text.strip("「」 \n"), None)
    return [t for t in seen if t]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pattern", default="*", help="dialogue files, e.g. 'haruhi*' (default all)")
    p.add_argument("--embedder", default="use")
    p.add_argument("--pairs", type=int, default=8, help="pairs shown per cosine band")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    corpus = os.environ.get("ROLECAST_CORPUS")
    if not corpus:
        p.error("set ROLECAST_CORPUS to the ChatHaruhi corpus folder")
    import numpy as np

    from rolecast.retrieval.embedders import get_embedder

    lines = user_lines(Path(corpus) / "kyon_generator", args.pattern)
    if len(lines) < 2:
        p.error(f"fewer than two lines match {args.pattern!r}")
    vectors = get_embedder(args.embedder).embed_documents(lines)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1.0)
    earlier = np.tril(sims, k=-1)  # each line against the lines before it
    earlier[np.triu_indices(len(lines))] = -1.0
    nearest = earlier.argmax(axis=1)
    best = earlier.max(axis=1)
    print(f"{len(lines)} distinct generated lines ({args.pattern}), embedder {args.embedder}\n")
    print("| threshold | dropped by a keeper | share |")
    print("|---|---|---|")
    for t in THRESHOLDS:
        kept: list[int] = []
        for i in range(len(lines)):
            if not kept or float(sims[i, kept].max()) < t:
                kept.append(i)
        dropped = len(lines) - len(kept)
        print(f"| {t:.2f} | {dropped} | {dropped / len(lines):.1%} |")
    rng = random.Random(args.seed)
    for lo, hi in BANDS:
        members = [i for i in range(1, len(lines)) if lo <= best[i] < hi]
        print(f"\n## cosine {lo:.2f}-{min(hi, 1.0):.2f}: {len(members)} lines\n")
        for i in sorted(rng.sample(members, min(args.pairs, len(members)))):
            print(f"- {best[i]:.3f}  {lines[nearest[i]]}  |  {lines[i]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
