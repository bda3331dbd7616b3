"""A 2-D map of the character's canon lines against generated lines.

Every text is embedded (the retrieval embedder) and the vectors are laid out in two
dimensions with t-SNE (scikit-learn); with fewer than ``TSNE_MIN`` points, where t-SNE
means nothing, a PCA projection is used and the report says so. Generated lines that fall
among the canon speak like the character; a cluster of their own does not.

Two pictures: a PNG (matplotlib) and a self-contained HTML file (inline SVG, a few lines of
script for the tooltips and the legend toggles; nothing fetched from elsewhere).
"""

from __future__ import annotations

import html
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..character.model import Character
from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from matplotlib.figure import Figure

    from ..retrieval.embedders import Embedder

CANON = "canon"
MAX_CANON = 1000  # canon lines mapped at most (a seeded sample): t-SNE time grows as n log n
TSNE_MIN = 8  # fewer points than this are projected with PCA
TSNE_PERPLEXITY = 30.0  # the usual default; lowered for small maps (it must stay below n)
PALETTE = (  # canon first, then one colour per generated label
    "#9aa5b1",
    "#d1495b",
    "#2e86ab",
    "#edae49",
    "#3b8b5a",
    "#8f5fbf",
    "#e07b39",
    "#5c6f7e",
)
_TEXT_KEYS = ("text", "reply", "content", "line")
CONDITION_LABELS = {  # a canon eval's conditions, as the map's legend shows them
    "canon": "reply with canon",
    "persona": "reply, persona only",
    "bare": "reply, bare model",
}
_LABEL_KEYS = ("label", "condition", "source", "model")


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str  # "canon" or the label of a generated line
    text: str


def _from_object(obj: Any, where: str) -> tuple[str, str]:
    if isinstance(obj, str):
        return "generated", obj
    if isinstance(obj, dict):
        text = next((obj[k] for k in _TEXT_KEYS if isinstance(obj.get(k), str)), None)
        if text is not None:
            label = next((str(obj[k]) for k in _LABEL_KEYS if obj.get(k)), "generated")
            return label, text
    raise InputError(f"{where}: expected a string or an object with a 'text' field")


def read_generated(path: Path) -> list[tuple[str, str]]:
    """(label, text) pairs from a file of generated lines: a canon eval's ``results.json``
    (labelled by condition), a JSON list, JSON Lines (strings or objects with ``text`` or
    ``reply`` and an optional ``label``/``condition``), or plain text, one line each."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"--generated {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InputError(f"--generated {path}: cannot read it ({reason})") from None
    pairs: list[tuple[str, str]] = []
    stripped = raw.lstrip()
    if path.suffix == ".json" or (stripped.startswith(("{", "[")) and path.suffix != ".jsonl"):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InputError(f"--generated {path}: invalid JSON ({exc})") from None
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            for item in data["items"]:  # a canon eval's results.json
                replies = item.get("replies", {}) if isinstance(item, dict) else {}
                for condition, reply in replies.items():
                    if isinstance(reply, dict) and isinstance(reply.get("reply"), str):
                        label = CONDITION_LABELS.get(condition, f"reply ({condition})")
                        pairs.append((label, reply["reply"]))
        elif isinstance(data, list):
            pairs = [_from_object(obj, f"{path}: item {i + 1}") for i, obj in enumerate(data)]
        else:
            raise InputError(
                f"--generated {path}: a JSON file must be a list of lines or a canon eval's "
                "results.json (with 'items')"
            )
    elif path.suffix == ".jsonl":
        for i, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise InputError(f"--generated {path}:{i}: invalid JSON ({exc})") from None
            pairs.append(_from_object(obj, f"{path}:{i}"))
    else:
        pairs = [("generated", ln.strip()) for ln in raw.splitlines() if ln.strip()]
    pairs = [(label, text.strip()) for label, text in pairs if text.strip()]
    if not pairs:
        raise InputError(f"--generated {path}: no generated lines in it")
    return pairs


def canon_lines(character: Character, limit: int = MAX_CANON, seed: int = 0) -> list[str]:
    """The character's own spoken lines, each once; a seeded sample when there are more
    than ``limit``."""
    seen: dict[str, None] = {}
    for scene in character.scenes:
        for ln in scene.lines:
            if character.is_self(ln.speaker) and ln.text.strip():
                seen.setdefault(ln.text.strip(), None)
    lines = list(seen)
    if len(lines) > limit:
        lines = random.Random(seed).sample(lines, limit)
    return lines


def project(vectors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of ``vectors`` and the method used ("t-SNE" or "PCA")."""
    import numpy as np

    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2)), "none"
    if n < TSNE_MIN:
        centred = vectors - vectors.mean(axis=0)
        if n == 1 or not np.any(centred):
            return np.zeros((n, 2)), "PCA"
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        coords = u[:, :2] * s[:2]
        if coords.shape[1] < 2:
            coords = np.hstack([coords, np.zeros((n, 1))])
        return coords, "PCA"
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("rolecast viz", "scikit-learn", extra="eval") from None
    from threadpoolctl import threadpool_limits

    perplexity = min(TSNE_PERPLEXITY, (n - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    # One thread: scikit-learn's OpenMP threads spin while they wait, and with the other
    # core busy 198 points took 47 s with two threads and 1.4 s with one.
    with threadpool_limits(limits=1):
        coords = tsne.fit_transform(np.asarray(vectors, dtype=np.float32))
    return np.asarray(coords), "t-SNE"


def build_map(
    character: Character,
    embedder: Embedder,
    generated: Sequence[tuple[str, str]] = (),
    max_canon: int = MAX_CANON,
    seed: int = 0,
) -> tuple[list[Point], str]:
    """The points of the map (canon first) and the projection used."""
    canon = canon_lines(character, max_canon, seed)
    if not canon and not generated:
        raise InputError(f"{character.name} has no lines of its own and nothing was generated")
    # a generated line never shares the canon's label, whatever its file calls it
    labels = [CANON] * len(canon) + [
        f"{label} (generated)" if label == CANON else label for label, _ in generated
    ]
    texts = canon + [text for _, text in generated]
    coords, method = project(embedder.embed_documents(texts), seed)
    points = [
        Point(float(x), float(y), label, text)
        for (x, y), label, text in zip(coords.tolist(), labels, texts, strict=True)
    ]
    return points, method


def colours(points: Sequence[Point]) -> dict[str, str]:
    labels = list(dict.fromkeys([CANON, *(p.label for p in points)]))
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def map_figure(points: Sequence[Point], title: str) -> Figure:
    from .report import plot_context

    with plot_context():
        return _map_figure(points, title)


def _map_figure(points: Sequence[Point], title: str) -> Figure:
    from .report import new_figure

    fig = new_figure(7.5, 6.0)
    ax = fig.add_subplot()
    colour = colours(points)
    for label in colour:
        xs = [p.x for p in points if p.label == label]
        ys = [p.y for p in points if p.label == label]
        if not xs:
            continue
        canon = label == CANON
        ax.scatter(
            xs,
            ys,
            s=9 if canon else 22,
            c=colour[label],
            alpha=0.45 if canon else 0.9,
            edgecolors="none" if canon else "black",
            linewidths=0.3,
            label=f"{label} ({len(xs)})",
        )
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize="small", markerscale=1.5)
    return fig


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }}
#map {{ border: 1px solid #ccc; background: #fff; max-width: 100%; height: auto; }}
#map circle {{ cursor: pointer; }}
#map circle:hover {{ stroke: #000; stroke-width: 2; }}
#tip {{ position: fixed; display: none; max-width: 420px; padding: 6px 8px; background: #fffbe6;
  border: 1px solid #999; border-radius: 4px; pointer-events: none; white-space: pre-wrap; }}
.legend label {{ margin-right: 14px; user-select: none; }}
.swatch {{ display: inline-block; width: 11px; height: 11px; border-radius: 50%;
  margin-right: 4px; vertical-align: -1px; }}
</style></head><body>
<h1>{title}</h1>
<p>{subtitle}</p>
<p class="legend">{legend}</p>
<svg id="map" xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}"
 viewBox="0 0 {size} {size}">
{circles}
</svg>
<div id="tip"></div>
<script>
(function () {{
  var tip = document.getElementById("tip");
  document.querySelectorAll("#map circle").forEach(function (c) {{
    c.addEventListener("mousemove", function (e) {{
      tip.textContent = c.getAttribute("data-label") + ": " + c.getAttribute("data-text");
      tip.style.display = "block";
      tip.style.left = (e.clientX + 14) + "px";
      tip.style.top = (e.clientY + 10) + "px";
    }});
    c.addEventListener("mouseleave", function () {{ tip.style.display = "none"; }});
  }});
  document.querySelectorAll(".legend input").forEach(function (box) {{
    box.addEventListener("change", function () {{
      document.querySelectorAll('#map circle[data-group="' + box.value + '"]')
        .forEach(function (c) {{ c.style.display = box.checked ? "" : "none"; }});
    }});
  }});
}})();
</script>
</body></html>
"""


def map_html(points: Sequence[Point], title: str, subtitle: str = "", size: int = 760) -> str:
    """A self-contained page: the map as inline SVG, each point's text on hover."""
    colour = colours(points)
    groups = {label: i for i, label in enumerate(colour)}
    pad = 20
    xs = [p.x for p in points] or [0.0]
    ys = [p.y for p in points] or [0.0]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    span = max(x1 - x0, y1 - y0) or 1.0

    def at(v: float, lo: float, hi: float) -> float:
        return pad + (v - lo + (span - (hi - lo)) / 2) / span * (size - 2 * pad)

    esc = html.escape
    # canon first so the generated points are drawn on top
    ordered = sorted(points, key=lambda p: p.label != CANON)
    circles = "\n".join(
        f'<circle cx="{at(p.x, x0, x1):.1f}" cy="{size - at(p.y, y0, y1):.1f}" '
        f'r="{3 if p.label == CANON else 5}" fill="{colour[p.label]}" '
        f'fill-opacity="{0.5 if p.label == CANON else 0.9}" data-group="{groups[p.label]}" '
        f'data-label="{esc(p.label)}" data-text="{esc(p.text)}">'
        f"<title>{esc(p.label)}: {esc(p.text)}</title></circle>"
        for p in ordered
    )
    counts = {label: sum(1 for p in points if p.label == label) for label in colour}
    legend = "".join(
        f'<label><input type="checkbox" value="{groups[label]}" checked>'
        f'<span class="swatch" style="background:{c}"></span>{esc(label)} ({counts[label]})'
        "</label>"
        for label, c in colour.items()
        if counts[label]
    )
    return _HTML.format(
        title=esc(title), subtitle=esc(subtitle), legend=legend, size=size, circles=circles
    )


def viz_markdown(
    character: Character, points: Sequence[Point], method: str, source: str, embedder: str
) -> str:
    from .report import markdown_table

    counts: dict[str, int] = {}
    for p in points:
        counts[p.label] = counts.get(p.label, 0) + 1
    lines = [
        f"# Map of {character.name}'s lines ({character.id})",
        "",
        f"{method} projection of `{embedder}` embeddings. Generated lines: {source}.",
    ]
    if method == "PCA":
        lines.append(f"(Fewer than {TSNE_MIN} points: PCA instead of t-SNE.)")
    lines += [
        "",
        markdown_table(["lines", "count"], list(counts.items())),
        "",
        "![map](map.png)",
        "",
        "Interactive version (hover a point to read it): [map.html](map.html)",
    ]
    return "\n".join(lines)
