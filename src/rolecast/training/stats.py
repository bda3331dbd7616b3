"""What a dataset holds, counted: samples by kind and by turn, tokens of prompts and replies
(the qwen3 tokenizer's count, which the default model shares), the replies' language, and a
histogram of the lengths."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..ingest.languages import language_of
from ..prompt.tokens import TokenCounter
from .dataset import Sample

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class DatasetStats:
    kinds: Counter[str] = field(default_factory=Counter)
    turns: Counter[int] = field(default_factory=Counter)  # generated samples by turn
    languages: Counter[str] = field(default_factory=Counter)  # of the replies
    prompt_tokens: list[int] = field(default_factory=list)
    reply_tokens: list[int] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(self.kinds.values())


def dataset_stats(samples: Iterable[Sample], counter: TokenCounter) -> DatasetStats:
    stats = DatasetStats()
    for s in samples:
        stats.kinds[s.kind] += 1
        if s.kind == "generated":
            stats.turns[int(s.source.get("turn", 1))] += 1
        stats.languages[language_of(s.reply) or "none"] += 1
        stats.prompt_tokens.append(sum(counter.count(m["content"]) for m in s.messages))
        stats.reply_tokens.append(counter.count(s.reply))
    return stats


def median(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0


def length_figure(stats: DatasetStats, title: str) -> Figure:
    """Two histograms: prompt tokens and reply tokens per sample."""
    from ..eval.report import new_figure, plot_context

    with plot_context():
        fig = new_figure(9.0, 3.6)
        for i, (name, values) in enumerate(
            (("prompt", stats.prompt_tokens), ("reply", stats.reply_tokens)), 1
        ):
            ax = fig.add_subplot(1, 2, i)
            ax.hist(values, bins=min(40, max(5, len(set(values)))), color=f"C{i - 1}")
            ax.axvline(median(values), color="black", linewidth=0.8, linestyle="--")
            ax.set_xlabel(f"{name} tokens (median {median(values)})")
            ax.set_ylabel("samples")
        fig.suptitle(title)
        return fig
