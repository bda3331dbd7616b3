"""What the page shows, as HTML: chat bubbles that say whose they are, the canon behind a reply
as its lines, the character gallery's cards. Pure: data in, escaped HTML out (every text from a
character, a card or a model is escaped here; the page's sanitiser runs after)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from ..character.model import Character, Scene

# narration inside a reply: （…） (…) 【…】 *…*; styled apart from what is said
NARRATION = re.compile(r"（[^（）]*）|\([^()]*\)|【[^【】]*】|\*[^*\n]+\*")
CONTEXT = 3  # lines shown before and after a scene's closest line
MAX_LINES = 8  # a scene longer than this is cut around its closest line


def styled(text: str) -> str:
    """The text escaped, its narration in spans, its line breaks kept."""
    out, at = [], 0
    for m in NARRATION.finditer(text):
        out.append(escape(text[at : m.start()]))
        out.append(f'<span class="rc-narr">{escape(m.group(0))}</span>')
        at = m.end()
    out.append(escape(text[at:]))
    return "".join(out).replace("\n", "<br>")


def hue(name: str) -> int:
    """A stable colour for a name without a picture."""
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:4], 16) % 360


def face_html(name: str, picture: str | None, cls: str = "rc-face") -> str:
    """A round picture, or the name's first letter on its own colour: never an empty box."""
    if picture:
        return f'<img class="{cls}" src="{escape(picture)}" alt="{escape(name)}">'
    initial = escape(name.strip()[:1].upper() or "?")
    return (
        f'<span class="{cls} rc-initial" style="background:hsl({hue(name)},55%,45%)"'
        f' aria-hidden="true">{initial}</span>'
    )


def bubble_html(
    name: str,
    picture: str | None,
    text: str,
    kind: str = "reply",
    frame: str | None = None,
    frame_caption: str = "",
    notes: Sequence[str] = (),
) -> str:
    """One message: who says it (face and name), what is said, the scene frame it matched
    (a thumbnail the page enlarges on click), and notes (swipes, stopped, not spoken)."""
    head = (
        f'<div class="rc-who">{face_html(name, picture)}<b class="rc-name">{escape(name)}</b></div>'
    )
    body = f'<div class="rc-said rc-{kind}">{styled(text) if text else "…"}</div>'
    parts = [head, body]
    if frame:
        cap = escape(frame_caption)
        parts.append(
            f'<figure class="rc-inline-frame"><img src="{escape(frame)}" alt="{cap}"'
            f' title="click to enlarge"><figcaption>{cap}</figcaption></figure>'
        )
    if notes:
        parts.append(f'<div class="rc-note">{escape("; ".join(notes))}</div>')
    accent = f' style="--rc-accent:hsl({hue(name)},55%,45%)"'  # the speaker's own colour
    return f'<div class="rc-msg rc-msg-{kind}"{accent}>{"".join(parts)}</div>'


def said(html: str) -> str:
    """The words of a bubble back from its HTML (for exports and tests)."""
    from html import unescape

    m = re.search(r'<div class="rc-said[^"]*">(.*?)</div>', html, re.S)
    inner = m.group(1) if m else html
    return unescape(re.sub(r"<[^>]+>", "", inner.replace("<br>", "\n")))


# ------------------------------------------------------------------ the canon behind a reply


def _window(n: int, best: int | None) -> range:
    if n <= MAX_LINES or best is None:
        return range(min(n, MAX_LINES))
    lo = max(0, min(best - CONTEXT, n - MAX_LINES))
    return range(lo, min(n, lo + MAX_LINES))


def scene_lines_html(scene: Scene, character: Character, best: int | None) -> str:
    lines = scene.lines
    shown = _window(len(lines), best)
    items = []
    if shown.start > 0:
        items.append('<li class="rc-more">…</li>')
    for j in shown:
        ln = lines[j]
        cls = ["rc-line"]
        if character.is_narrator(ln.speaker):
            cls.append("rc-narration")
        elif character.is_self(ln.speaker):
            cls.append("rc-own")
        mark = ""
        if j == best:
            cls.append("rc-best")
            mark = '<span class="rc-best-mark" title="closest to your line">★</span>'
        who = "" if character.is_narrator(ln.speaker) else f"<b>{escape(ln.speaker)}</b> "
        items.append(f'<li class="{" ".join(cls)}">{mark}{who}{styled(ln.text)}</li>')
    if shown.stop < len(lines):
        items.append('<li class="rc-more">…</li>')
    return f'<ol class="rc-lines">{"".join(items)}</ol>'


def canon_html(rows: Iterable[Mapping[str, Any]], character: Character) -> str:
    """The canon behind a reply: each retrieved scene with its lines (the character's
    highlighted, the one closest to the user's line starred), whether it was sent, and its
    scores behind a toggle; lore entries and remembered turns marked as such. "" for none."""
    scenes = {s.id: s for s in character.scenes}
    rows = sorted(rows, key=lambda r: not r.get("sent"))  # what was sent first, in its order
    cards = []
    for row in rows:
        kind = row.get("kind", "canon")
        sent = bool(row.get("sent"))
        badge = {"lore": "lore", "memory": "from memory"}.get(kind, "sent" if sent else "not sent")
        title = escape(
            "earlier in this chat"
            if kind == "memory"
            else str(row.get("title") or row.get("scene") or "")
        )
        if kind == "canon" and row.get("scene") in scenes:
            body = scene_lines_html(scenes[row["scene"]], character, row.get("best_line"))
        else:
            body = f'<p class="rc-line">{styled(str(row.get("text") or ""))}</p>'
        scores = ""
        if row.get("score") is not None:
            scores = (
                '<details class="rc-scores"><summary>scores</summary>'
                f"fused {row['score']} · dense {row.get('dense')} · bm25 {row.get('bm25')}"
                f" · scene {escape(str(row.get('scene')))}</details>"
            )
        state = "rc-sent" if sent else "rc-unsent"
        sid = escape(str(row.get("scene")))
        cards.append(
            f'<section class="rc-scene rc-{kind} {state}" data-scene="{sid}">'
            f'<header><span class="rc-title">{title}</span>'
            f'<span class="rc-badge">{badge}</span></header>{body}{scores}</section>'
        )
    if not cards:
        return ""
    n_sent = sum(1 for r in rows if r.get("sent") and r.get("kind", "canon") == "canon")
    n_canon = sum(1 for r in rows if r.get("kind", "canon") == "canon")
    title = f"canon behind this reply: {n_sent} of {n_canon} scenes sent"
    return f'<div class="rc-canon"><div class="rc-canon-title">{title}</div>{"".join(cards)}</div>'


# ------------------------------------------------------------------ the gallery


@dataclass(frozen=True)
class Card:
    id: str
    name: str
    source: str
    greeting: str
    picture: str | None  # a URL the page can load, or None


def gallery_html(cards: Sequence[Card], current: str | None = None) -> str:
    """The characters as cards (picture, name, source, greeting); the page's script picks one
    on click and filters them as the search box is typed in."""
    out = []
    for c in cards:
        search = escape(" ".join([c.id, c.name, c.source, c.greeting]).lower())
        picked = " rc-current" if c.id == current else ""
        out.append(
            f'<button type="button" class="rc-card{picked}" data-id="{escape(c.id)}"'
            f' data-search="{search}">{face_html(c.name, c.picture, "rc-card-face")}'
            f'<span class="rc-card-name">{escape(c.name)}</span>'
            f'<span class="rc-card-source">{escape(c.source or c.id)}</span>'
            f'<span class="rc-card-greeting">{escape(c.greeting[:120])}</span></button>'
        )
    out.append(
        '<button type="button" class="rc-card rc-import-card" title="import a character">'
        '<span class="rc-card-face rc-initial rc-plus">+</span>'
        '<span class="rc-card-name">import</span>'
        '<span class="rc-card-greeting">a character card (PNG, JSON, CHARX) or a ChatHaruhi '
        "role (zip, jsonl): pick it here, or drop it anywhere on the page</span></button>"
    )
    return f'<div class="rc-gallery">{"".join(out)}</div>'
