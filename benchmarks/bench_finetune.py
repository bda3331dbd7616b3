"""LoRA fine-tuning speed: tokens per second of `rolecast finetune` for each base model.

    python benchmarks/bench_finetune.py [--character xiaoman] [--steps 6] [--batch-size 4]
        [--bases smollm2-135m,qwen2.5-coder-0.5b] [--device auto]

The dataset is the character's canon samples (each answering line, its scene's earlier lines
as history, the prompt as the character's session assembles it for the default local model;
no backend call). Each base
trains ``--steps`` optimiser steps (rank 16 on q/k/v/o, samples up to 2,048 tokens) with no
checkpoint and no GGUF conversion. Prints, per base: the time to load the model (roughly),
tokens/s over the training steps (forward, backward and optimiser; every token of the padded
batch rows counted as the trainer counts them: each sample's own), and the samples' mean
length. The issue asks for the figure on the CPU (no target) and on a CUDA device where one
is lent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def train(base: str, data: Path, out: Path, steps: int, batch: int, device: str) -> tuple[Any, ...]:
    from rolecast.training import adapter as ad
    from rolecast.training import finetune as ft

    marks: list[float] = []

    def step(done: int, total: int, loss: float, rate: float) -> None:
        marks.append(time.perf_counter())
        print(f"  {base} step {done}/{total} loss {loss:.3f} {rate:.0f} tok/s", file=sys.stderr)

    settings = ft.Settings(base=base, max_steps=steps, batch_size=batch, save_every=10**6)
    started = time.perf_counter()
    result = ft.finetune(data, out, settings, device=device, progress=step, convert=False)
    figures = ad.read_adapter(out).figures
    first = marks[1] - marks[0] if len(marks) > 1 else 0.0
    load = marks[0] - started - first  # before the first step, less that step: loading
    mean = figures["tokens"] / figures["samples"]
    return base, figures["device"], figures["samples"], mean, load, result.tokens_per_second


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--character", default="xiaoman")
    p.add_argument("--bases", default="smollm2-135m,qwen2.5-coder-0.5b")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    from rolecast.backends.local import LocalLLM
    from rolecast.character import store
    from rolecast.retrieval.index import load_index
    from rolecast.session import Session
    from rolecast.training import dataset as ds
    from rolecast.training.samples import canon_samples
    from rolecast.training.split import held_out_scenes

    character = store.load(args.character)
    held = held_out_scenes(character)
    # the default model's tokenizer and budgets (no weights): the prompts augment makes
    llm = LocalLLM(vocab_only=True)
    prototype = Session(character, load_index(character, "use"), llm, order=llm.prompt_order)
    samples = canon_samples(prototype, frozenset(held))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        manifest = ds.Manifest(
            character={"id": character.id, "name": character.name},
            held_out=list(held),
            split={"share": 0.1, "seed": 0},
        )
        ds.write_dataset(data, manifest, samples)
        rows = [
            train(base, data, Path(tmp) / base, args.steps, args.batch_size, args.device)
            for base in args.bases.split(",")
        ]
    print(
        f"{character.name}: {len(samples)} canon samples; {args.steps} steps of {args.batch_size}"
    )
    print("| base | device | samples | mean tokens/sample | load s | training tokens/s |")
    print("|---|---|---|---|---|---|")
    for base, device, n, mean, load, rate in rows:
        print(f"| {base} | {device} | {n} | {mean:.0f} | {load:.0f} | {rate:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
