"""`rolecast study serve`: the rating page and its API (Starlette), votes in the store.

    GET  /                      the page: the scene, two replies (order and side drawn per rater
                                and pair), "which sounds more like the character?", can't tell
    GET  /api/next?rater=R      the next pair rater R has not judged, and R's progress
    POST /api/vote              {"rater", "pair", "choice": "left"|"right"|"tie", "second"?}
    GET  /admin                 live counts (Authorization: Bearer KEY, or ?key=KEY)
    GET  /api/export.csv|jsonl  every vote (admin)

A vote is kept in one transaction, once per rater and pair (a second is refused with 409). A
pair id the study does not have is a 400, a rater voting faster than a person reads is a 429,
an unavailable database a 503 that the page retries: no vote is lost or counted twice.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import html
import io
import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ..errors import RolecastError
from ..store import Store

RATER = re.compile(r"[\w.@+-]{1,64}")
SECOND_CHOICES = ("", "left", "right", "tie")
MIN_VOTE_GAP_S = 0.5  # a person reads two replies before voting: quicker is a script
MAX_PER_MINUTE = 60


@dataclass
class Limiter:
    """Per rater: at most one vote per ``gap`` seconds and ``per_minute`` a minute."""

    gap: float = MIN_VOTE_GAP_S
    per_minute: int = MAX_PER_MINUTE
    _seen: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, rater: str, now: float | None = None) -> float:
        """0 when the rater may vote now (and it is counted), else seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._seen.setdefault(rater, deque())
            while times and now - times[0] > 60:
                times.popleft()
            if times and now - times[-1] < self.gap:
                return self.gap - (now - times[-1])
            if len(times) >= self.per_minute:
                return 60 - (now - times[0])
            times.append(now)
            return 0.0


@dataclass
class StudyState:
    prepared: Mapping[str, Any]
    store: Store
    admin_key: str
    limiter: Limiter = field(default_factory=Limiter)

    def __post_init__(self) -> None:
        self.digest = str(self.prepared["digest"])
        self.pairs = {p["id"]: p for p in self.prepared["pairs"]}
        self.items = {it["id"]: it for it in self.prepared["items"]}
        self.order = list(self.pairs)

    def left_is_a(self, rater: str, pair: str) -> bool:
        """The side of the pair's first system for this rater: drawn once, the same on
        every request (a hash), different across raters and pairs."""
        h = hashlib.sha256(f"{self.digest}\0{rater}\0{pair}".encode()).digest()
        return h[0] % 2 == 0

    def next_pair(self, rater: str) -> dict[str, Any]:
        done = self.store.voted(self.digest, rater)
        todo = [p for p in self.order if p not in done]
        progress = {"done": len(self.order) - len(todo), "total": len(self.order)}
        if not todo:
            return {"pair": None, "progress": progress}
        rng = random.Random(f"{self.digest}\0{rater}")  # each rater's own order, stable
        order = list(todo)
        rng.shuffle(order)
        pid = order[0]
        p, item = self.pairs[pid], self.items[self.pairs[order[0]]["item"]]
        replies = self.prepared["replies"][p["item"]]
        a, b = replies[p["a"]], replies[p["b"]]
        left, right = (a, b) if self.left_is_a(rater, pid) else (b, a)
        return {
            "pair": pid,
            "character": item["character"],
            "context": [{"speaker": s, "text": t} for s, t in item["context"]],
            "line": {"speaker": item["line"][0], "text": item["line"][1]},
            "left": left,
            "right": right,
            "progress": progress,
        }


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def check_rater(rater: Any) -> str:
    if not isinstance(rater, str) or not RATER.fullmatch(rater):
        raise Refused(400, "rater: 1 to 64 letters, digits or . @ + - _ (a name or a token)")
    return rater


def vote(state: StudyState, body: Any) -> dict[str, Any]:
    """Check a vote and keep it; what the page is told."""
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object")
    rater = check_rater(body.get("rater"))
    pid = body.get("pair")
    if not isinstance(pid, str) or pid not in state.pairs:
        raise Refused(400, "no such pair in this study (a tampered or stale pair id)")
    choice = body.get("choice")
    if choice not in ("left", "right", "tie"):
        raise Refused(400, "choice must be left, right or tie")
    second = body.get("second", "") or ""
    if second not in SECOND_CHOICES:
        raise Refused(400, "second must be left, right or tie")
    wait = state.limiter.wait(rater)
    if wait:
        raise Refused(429, "too quick: read both replies first", {"Retry-After": f"{wait:.1f}"})
    a_left = state.left_is_a(rater, pid)

    def side(c: str) -> str:
        return "tie" if c == "tie" else ("a" if (c == "left") == a_left else "b")

    p = state.pairs[pid]
    try:
        kept = state.store.add_vote(
            state.digest,
            pid,
            rater,
            side(choice),
            side(second) if second else "",
            p["a"] if a_left else p["b"],
        )
    except RolecastError as exc:
        raise Refused(
            503, f"the votes cannot be stored now ({exc}); the page will try again"
        ) from None
    if not kept:
        raise Refused(409, "you have judged this pair already: the first vote stands")
    return {"ok": True}


def counts(state: StudyState) -> dict[str, Any]:
    rows = state.store.votes(state.digest)
    raters: dict[str, int] = {}
    per_pair: dict[str, int] = {}
    for pid, rater, *_ in rows:
        raters[rater] = raters.get(rater, 0) + 1
        per_pair[pid] = per_pair.get(pid, 0) + 1
    return {
        "votes": len(rows),
        "raters": raters,
        "pairs": len(state.pairs),
        "pairs_voted": len(per_pair),
        "min_votes_per_pair": min((per_pair.get(p, 0) for p in state.pairs), default=0),
    }


def export(state: StudyState, kind: str) -> str:
    rows = state.store.votes(state.digest)
    records = []
    for pid, rater, choice, second, left, created in rows:
        p = state.pairs.get(pid, {})
        records.append(
            {
                "pair": pid,
                "item": p.get("item", ""),
                "a": p.get("a", ""),
                "b": p.get("b", ""),
                "rater": rater,
                "choice": choice,
                "second": second,
                "shown_left": left,
                "created": created,
            }
        )
    if kind == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf,
        ["pair", "item", "a", "b", "rater", "choice", "second", "shown_left", "created"],
    )
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def create_study_app(state: StudyState) -> Any:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    def refused(exc: Refused) -> Response:
        return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)

    def admin(request: Request) -> None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        given = given or request.query_params.get("key", "")
        if not state.admin_key or not hmac.compare_digest(given, state.admin_key):
            raise Refused(401, "the admin view needs the study's admin key")

    async def page(request: Request) -> Response:
        return HTMLResponse(render_page(state.prepared))

    async def next_pair(request: Request) -> Response:
        try:
            rater = check_rater(request.query_params.get("rater"))
            return JSONResponse(await run_in_threadpool(state.next_pair, rater))
        except Refused as exc:
            return refused(exc)
        except RolecastError as exc:
            return refused(Refused(503, f"the study's database is unavailable ({exc})"))

    async def post_vote(request: Request) -> Response:
        try:
            raw = await request.body()
            if len(raw) > 4096:
                raise Refused(413, "a vote is a few fields: this body is too large")
            try:
                body = json.loads(raw)
            except ValueError:
                raise Refused(400, "the body is not JSON") from None
            return JSONResponse(await run_in_threadpool(vote, state, body))
        except Refused as exc:
            return refused(exc)

    async def admin_page(request: Request) -> Response:
        try:
            admin(request)
            c = await run_in_threadpool(counts, state)
        except Refused as exc:
            return refused(exc)
        rows = "".join(
            f"<tr><td>{html.escape(r)}</td><td>{n}</td></tr>"
            for r, n in sorted(c["raters"].items())
        )
        return HTMLResponse(
            f"<!doctype html><meta charset=utf-8><title>admin</title>"
            "<meta http-equiv=refresh content=5>"  # live counts: the page reloads itself
            f"<h1>{html.escape(str(state.prepared['title']))}</h1>"
            f"<p id=counts>{c['votes']} votes, {len(c['raters'])} raters, "
            f"{c['pairs_voted']}/{c['pairs']} pairs voted, at least {c['min_votes_per_pair']} "
            f"each</p><table><tr><th>rater</th><th>votes</th></tr>{rows}</table>"
        )

    async def admin_counts(request: Request) -> Response:
        try:
            admin(request)
            return JSONResponse(await run_in_threadpool(counts, state))
        except Refused as exc:
            return refused(exc)

    async def exported(request: Request) -> Response:
        kind = request.path_params["kind"]
        try:
            admin(request)
            if kind not in ("csv", "jsonl"):
                raise Refused(404, "export.csv or export.jsonl")
            text = await run_in_threadpool(export, state, kind)
        except Refused as exc:
            return refused(exc)
        media = "text/csv" if kind == "csv" else "application/x-ndjson"
        return PlainTextResponse(text, media_type=f"{media}; charset=utf-8")

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/next", next_pair),
            Route("/api/vote", post_vote, methods=["POST"]),
            Route("/admin", admin_page),
            Route("/api/admin/counts", admin_counts),
            Route("/api/export.{kind}", exported),
        ]
    )


def render_page(prepared: Mapping[str, Any]) -> str:
    title = html.escape(str(prepared["title"]))
    question = html.escape(str(prepared.get("question") or ""))
    second = html.escape(str(prepared.get("second_question") or ""))
    page = resources.files("rolecast.study").joinpath("page.html").read_text("utf-8")
    return (
        page.replace("%TITLE%", title).replace("%QUESTION%", question).replace("%SECOND%", second)
    )
