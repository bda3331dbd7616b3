"""The ASGI app: ``GET /v1/models`` lists characters, ``POST /v1/chat/completions`` plays them,
``POST /v1/audio/speech`` speaks (see ``speech.py``).

``model`` is a character (``"xiaoman"``) or a character and a backend model
(``"xiaoman@qwen2.5-0.5b"``). Without a session id the request is stateless: the client's
messages are the history, fitted into the budget with the retrieved canon. With one (header
``X-Session-Id`` or the ``user`` field) the server keeps the history; the client sends the new
line. Errors have OpenAI's shape: ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..backends.base import LLM, GenerationParams, get_llm, shared
from ..character import store as characters
from ..character.model import Character
from ..errors import BackendError, InputError, RolecastError, UnknownNameError
from ..prompt.assemble import Turn
from ..prompt.tokens import encoding_for_model, quicktok_counter
from ..retrieval.hybrid import CanonIndex
from ..retrieval.index import load_index
from ..session import Session
from .errors import ApiError
from .keys import Keys, RateLimiter
from .storage import Store

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # bytes of a request body
MAX_MESSAGES = 1000
SESSION_HEADER = "x-session-id"
WORKER_THREADS = 256  # concurrent requests in threads (a streaming reply holds one throughout)


class TimedLLM(LLM):
    """One request's view of the shared backend: counts the time spent waiting on it."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.context_window = inner.context_window
        self.model = inner.model
        self.prompt_order = inner.prompt_order  # type: ignore[misc]
        self.canon_budget = inner.canon_budget  # type: ignore[misc]
        self.waited = 0.0
        self.called_at: float | None = None
        self.first_chunk_at: float | None = None

    def stream(self, messages, params):  # type: ignore[no-untyped-def]
        self.called_at = self.called_at or time.perf_counter()
        chunks = self.inner.stream(messages, params)
        while True:
            start = time.perf_counter()
            try:
                chunk = next(chunks)
            except StopIteration:
                self.waited += time.perf_counter() - start
                return
            now = time.perf_counter()
            self.waited += now - start
            if self.first_chunk_at is None:
                self.first_chunk_at = now
            yield chunk

    def token_counter(self):  # type: ignore[no-untyped-def]
        return self.inner.token_counter()


@dataclass
class ServerState:
    store: Store
    keys: Keys
    backend: str = "local"
    model: str | None = None
    llm_options: dict[str, Any] = field(default_factory=dict)
    embedder: str = "use"
    max_body: int = MAX_BODY
    limiter: RateLimiter = field(default_factory=RateLimiter)
    timings: Path | None = None  # a JSON line per request: where rolecast's time went
    _indexes: dict[str, CanonIndex] = field(default_factory=dict)
    _llms: dict[str | None, LLM] = field(default_factory=dict)
    _tts: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def character(self, name: str) -> tuple[Character, CanonIndex]:
        with self._lock:
            if name not in self._indexes:
                try:
                    c = characters.load(name)
                except UnknownNameError as exc:
                    raise ApiError(
                        404,
                        f"the model {name!r} does not exist: {exc}",
                        "invalid_request_error",
                        "model_not_found",
                    ) from None
                self._indexes[name] = load_index(c, self.embedder)
            index = self._indexes[name]
        return index.character, index

    def warm_up(self) -> None:
        """Load what the first requests would otherwise wait for: every character's index
        (and the embedder), the default model and its token counter."""
        started = time.perf_counter()
        for cid in characters.package_dirs():
            try:
                self.character(cid)
            except (ApiError, RolecastError) as exc:
                log.warning("character %s not loaded: %s", cid, exc)
        try:
            llm = self.llm(None)
            if llm.token_counter() is None:
                quicktok_counter(encoding_for_model(llm.model))
        except (ApiError, RolecastError) as exc:
            log.warning("model not loaded: %s", exc)
        log.info("warmed up in %.1f s", time.perf_counter() - started)

    def llm(self, model: str | None) -> LLM:
        model = model or self.model
        with self._lock:
            if model not in self._llms:
                try:
                    self._llms[model] = shared(
                        get_llm(self.backend, model=model, **self.llm_options)
                    )
                except UnknownNameError as exc:
                    raise ApiError(
                        404, str(exc), "invalid_request_error", "model_not_found"
                    ) from None
            return self._llms[model]

    def tts(self, name: str) -> Any:
        """The TTS backend ``name`` (made once, shared by requests)."""
        from ..voice.base import get_tts

        with self._lock:
            if name not in self._tts:
                self._tts[name] = get_tts(name)
            return self._tts[name]


# ---------------------------------------------------------------- request parsing


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ApiError(
                    400, f"{where}: only text content is supported", "invalid_request_error"
                )
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise ApiError(400, f"{where}: content must be a string", "invalid_request_error")


@dataclass
class ChatRequest:
    character: str
    backend_model: str | None
    messages: list[tuple[str, str, str | None]]  # role, text, name
    stream: bool
    include_usage: bool
    params: GenerationParams
    session_id: str | None


def parse_request(body: Any, session_header: str | None) -> ChatRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_request_error")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "'model' must name a character", "invalid_request_error")
    character, _, backend_model = model.partition("@")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "'messages' must be a non-empty list", "invalid_request_error")
    if len(raw) > MAX_MESSAGES:
        raise ApiError(400, f"at most {MAX_MESSAGES} messages", "invalid_request_error")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in (
            "system",
            "user",
            "assistant",
            "developer",
        ):
            raise ApiError(
                400,
                f"messages[{i}]: role must be system, user or assistant",
                "invalid_request_error",
            )
        name = m.get("name") if isinstance(m.get("name"), str) else None
        messages.append((m["role"], _text(m.get("content"), f"messages[{i}]"), name))
    if not any(role == "user" for role, _, _ in messages):
        raise ApiError(400, "no user message to answer", "invalid_request_error")
    params = GenerationParams()
    updates: dict[str, Any] = {}
    for key, target, kind in (
        ("max_tokens", "max_tokens", int),
        ("max_completion_tokens", "max_tokens", int),
        ("temperature", "temperature", float),
        ("top_p", "top_p", float),
        ("presence_penalty", "presence_penalty", float),
        ("frequency_penalty", "frequency_penalty", float),
        ("seed", "seed", int),
    ):
        val = body.get(key)
        if val is None:
            continue
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            raise ApiError(400, f"'{key}' must be a number", "invalid_request_error")
        updates[target] = kind(val)
    if "max_tokens" in updates and not 1 <= updates["max_tokens"] <= 8192:
        raise ApiError(400, "'max_tokens' must be between 1 and 8192", "invalid_request_error")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
            raise ApiError(
                400, "'stop' must be a string or up to 4 strings", "invalid_request_error"
            )
        updates["stop"] = tuple(stop)
    session_id = session_header or (body.get("user") if isinstance(body.get("user"), str) else None)
    if session_id is not None and not 1 <= len(session_id) <= 128:
        raise ApiError(400, "a session id has 1 to 128 characters", "invalid_request_error")
    options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
    return ChatRequest(
        character=character.strip(),
        backend_model=backend_model.strip() or None,
        messages=messages,
        stream=bool(body.get("stream")),
        include_usage=bool(options.get("include_usage")),
        params=replace(params, **updates),
        session_id=session_id,
    )


# ---------------------------------------------------------------- one turn


@dataclass
class Turnout:
    """What a request prepares before generation: the session, the line and the timings."""

    session: Session
    line: str
    as_role: str | None
    report: Any
    prepare_s: float
    started: float = 0.0  # perf_counter when preparing began (in a worker thread)
    received: float = 0.0  # perf_counter when the request arrived


def _prepare(state: ServerState, key_id: str, req: ChatRequest) -> Turnout:
    start = time.perf_counter()
    character, index = state.character(req.character)
    llm = TimedLLM(state.llm(req.backend_model))
    session = Session(character, index, llm, params=req.params, order=llm.prompt_order)  # type: ignore[arg-type]
    *earlier, (last_role, last_text, last_name) = [m for m in req.messages if m[0] != "system"]
    if last_role != "user":
        raise ApiError(400, "the last message must be the user's line", "invalid_request_error")
    if not last_text.strip():
        raise ApiError(
            400, "empty message: the last user message has no text", "invalid_request_error"
        )
    if req.session_id is not None:
        owner = state.store.session_character(key_id, req.session_id)
        if owner is not None and owner != character.id:
            raise ApiError(
                409,
                f"session {req.session_id!r} is with {owner!r}, not {character.id!r}",
                "invalid_request_error",
                "session_character_mismatch",
            )
        for msg in state.store.messages(key_id, req.session_id):
            session.history.append(Turn(msg.speaker, msg.content))
    else:
        for role, text, name in earlier:
            speaker = character.name if role == "assistant" else (name or character.user_role)
            session.history.append(Turn(speaker, text))
    as_role = last_name if last_name and last_name != character.user_role else None
    report = session.prepare(last_text, as_role)
    return Turnout(session, last_text, as_role, report, time.perf_counter() - start, start)


def _save(state: ServerState, key_id: str, req: ChatRequest, t: Turnout) -> None:
    if req.session_id is None:
        return
    report = t.session.last
    assert report is not None
    state.store.append_turn(
        key_id,
        req.session_id,
        t.session.character.id,
        [
            ("user", report.line.speaker, t.line),
            ("assistant", t.session.character.name, report.reply),
        ],
    )


def _usage(t: Turnout) -> dict[str, int]:
    report = t.session.last
    assert report is not None and t.session.counter is not None
    prompt = int(report.assembly.parts.get("total", 0))
    completion = t.session.counter.count(report.reply)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


# ---------------------------------------------------------------- handlers


async def models(request: Request) -> Response:
    state: ServerState = request.app.state.rolecast
    try:
        state.keys.authenticate(request.headers.get("authorization"))
    except ApiError as exc:
        return exc.response()
    data = []
    for cid, path in characters.package_dirs().items():
        data.append(
            {
                "id": cid,
                "object": "model",
                "created": int(path.stat().st_mtime),
                "owned_by": "rolecast",
            }
        )
    return JSONResponse({"object": "list", "data": data})


async def session_messages(request: Request) -> Response:
    state: ServerState = request.app.state.rolecast
    try:
        key_id = state.keys.authenticate(request.headers.get("authorization"))
    except ApiError as exc:
        return exc.response()
    sid = request.path_params["session_id"]
    character = await run_in_threadpool(state.store.session_character, key_id, sid)
    if character is None:  # another key's session looks exactly like one that does not exist
        return ApiError(
            404, f"no session {sid!r}", "invalid_request_error", "session_not_found"
        ).response()
    rows = await run_in_threadpool(state.store.messages, key_id, sid)
    return JSONResponse(
        {
            "id": sid,
            "character": character,
            "messages": [
                {"role": m.role, "name": m.speaker, "content": m.content, "created": m.created}
                for m in rows
            ],
        }
    )


def _admit(state: ServerState, request: Request) -> str:
    """The request's key id, once its key is known and within its rate (else ApiError)."""
    key_id = state.keys.authenticate(request.headers.get("authorization"))
    wait = state.limiter.check(key_id)
    if wait:
        raise ApiError(
            429,
            f"rate limit: retry in {wait:.1f} s",
            "rate_limit_error",
            "rate_limited",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    return key_id


async def chat_completions(request: Request) -> Response:
    state: ServerState = request.app.state.rolecast
    received = time.perf_counter()
    try:
        key_id = _admit(state, request)
        body = await _read_body(request, state.max_body)
        req = parse_request(body, request.headers.get(SESSION_HEADER))
        t = await run_in_threadpool(_prepare, state, key_id, req)
        t.received = received
    except ApiError as exc:
        return exc.response()
    except InputError as exc:
        return ApiError(400, str(exc), "invalid_request_error").response()
    except RolecastError as exc:
        return ApiError(500, str(exc), "server_error").response()
    added_ms = (time.perf_counter() - received) * 1000
    headers = {
        "Server-Timing": f"rolecast;dur={added_ms:.2f}",
        "X-Rolecast-Prepare-Ms": f"{added_ms:.2f}",
    }
    if req.session_id is not None:
        headers["X-Session-Id"] = req.session_id
    rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    model = (
        f"{t.session.character.id}@{t.session.llm.model}"
        if req.backend_model
        else t.session.character.id
    )
    if req.stream:
        return StreamingResponse(
            _sse(state, key_id, req, t, rid, model), media_type="text/event-stream", headers=headers
        )
    try:
        reply = await run_in_threadpool(_reply, t)
        await run_in_threadpool(_save, state, key_id, req, t)
        _log_timing(state, t, None)
    except BackendError as exc:
        return ApiError(502, str(exc), "upstream_error").response(headers)
    except RolecastError as exc:
        return ApiError(500, str(exc), "server_error").response(headers)
    return JSONResponse(
        {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(t),
        },
        headers=headers,
    )


def _reply(t: Turnout) -> str:
    for _ in t.session.say(t.line, t.as_role, report=t.report):
        pass
    assert t.session.last is not None
    return t.session.last.reply


def _log_timing(state: ServerState, t: Turnout, first_sent: float | None) -> None:
    """With ``timings`` set: what rolecast added, apart from waiting on the backend."""
    if state.timings is None:
        return
    llm = t.session.llm
    assert isinstance(llm, TimedLLM)
    total = time.perf_counter() - t.received
    row = {
        "prepare_ms": t.prepare_s * 1000,
        "backend_ms": llm.waited * 1000,
        "total_ms": total * 1000,
        "added_ms": (total - llm.waited) * 1000,
    }
    if llm.called_at is not None:  # before the first token: until the backend is called
        row["to_backend_ms"] = (llm.called_at - t.received) * 1000
        row["queued_ms"] = (t.started - t.received) * 1000  # waiting for a worker thread
        row["to_stream_ms"] = (llm.called_at - t.started - t.prepare_s) * 1000
    if first_sent is not None and llm.first_chunk_at is not None:
        # the reply cleaner holds the first characters back until they cannot be a name
        # prefix: time spent waiting for more of the backend's tokens, not rolecast's work
        row["holdback_ms"] = (first_sent - llm.first_chunk_at) * 1000
    with state._lock, open(state.timings, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _chunk(rid: str, model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _sse(
    state: ServerState, key_id: str, req: ChatRequest, t: Turnout, rid: str, model: str
) -> AsyncIterator[str]:
    yield _chunk(rid, model, {"role": "assistant", "content": ""})
    pieces: Iterator[str] = t.session.say(t.line, t.as_role, report=t.report)
    first_sent: float | None = None
    try:
        async for piece in iterate_in_threadpool(pieces):
            yield _chunk(rid, model, {"content": piece})
            first_sent = first_sent or time.perf_counter()
    except RolecastError as exc:  # after the first byte: an error event, as OpenAI sends one
        body = {"error": {"message": str(exc), "type": "upstream_error", "code": None}}
        yield f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
        return
    await run_in_threadpool(_save, state, key_id, req, t)  # only a complete turn is kept
    _log_timing(state, t, first_sent)
    yield _chunk(rid, model, {}, "stop")
    if req.include_usage:
        usage = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "usage": _usage(t),
        }
        yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"


async def _read_body(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            413, f"request body over {limit} bytes", "invalid_request_error", "too_large"
        )
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise ApiError(
                413, f"request body over {limit} bytes", "invalid_request_error", "too_large"
            )
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(
            400, f"the request body is not valid JSON: {exc}", "invalid_request_error"
        ) from None


async def speech(request: Request) -> Response:
    """``POST /v1/audio/speech``: ``model`` names a TTS backend (kokoro, espeak) or a character
    (its voice); ``voice``, ``speed`` and ``response_format`` (wav, pcm) as OpenAI's."""
    from .speech import SpeechRequest, synthesize

    state: ServerState = request.app.state.rolecast
    try:
        _admit(state, request)  # the key and its rate; the speech needs no session
        req = SpeechRequest.parse(await _read_body(request, state.max_body))
        data, media_type = await run_in_threadpool(synthesize, state, req)
    except ApiError as exc:
        return exc.response()
    except InputError as exc:
        return ApiError(400, str(exc), "invalid_request_error").response()
    except UnknownNameError as exc:
        return ApiError(400, str(exc), "invalid_request_error", "voice_not_found").response()
    except RolecastError as exc:
        return ApiError(500, str(exc), "server_error").response()
    return Response(data, media_type=media_type)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(state: ServerState) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # streaming replies each hold a worker thread while they wait on the backend
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        await run_in_threadpool(state.warm_up)
        yield
        state.store.close()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/audio/speech", speech, methods=["POST"]),
            Route("/v1/sessions/{session_id}", session_messages),
            Route("/healthz", health),
        ],
    )
    app.state.rolecast = state
    return app
