"""The ASGI app: ``GET /v1/models`` lists characters, ``POST /v1/chat/completions`` plays them,
``POST /v1/audio/speech`` speaks (see ``speech.py``).

``model`` is a character (``"xiaoman"``) or a character and a backend model
(``"xiaoman@qwen2.5-coder-0.5b"``). Without a session id the request is stateless: the client's
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
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..backends.base import LLM, GenerationParams, LockedLLM, WrappedLLM, shared
from ..backends.spec import BackendSpec
from ..character import store as characters
from ..character.model import Character
from ..character.package import TOML, load_character
from ..character.personality import parse_dials, with_dials
from ..chats import Chats, load_memory
from ..errors import BackendError, InputError, RolecastError, UnknownNameError
from ..group.scene import GroupScene
from ..group.turns import POLICIES, find_member
from ..memory import Memory
from ..prompt.assemble import Turn
from ..prompt.tokens import encoding_for_model, quicktok_counter
from ..resources import ResourceCache
from ..retrieval.hybrid import CanonIndex
from ..retrieval.index import load_index
from ..session import Session
from ..store import Store
from . import validate
from .allowed import Allowed, not_found
from .errors import ApiError, internal, public
from .keys import Keys, RateLimiter
from .streams import (
    BODY_TIMEOUT,
    CLIENT_CLOSED,
    SEND_TIMEOUT,
    ClientGone,
    ReplyStream,
    close,
    run_while_connected,
)

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # bytes of a request body
MAX_MESSAGES = 1000
MAX_TOKENS = 8192  # the most a request may ask to generate
MAX_CHOICES = 128  # OpenAI's bound for n (here only n=1 is served)
SESSION_HEADER = "x-session-id"
# loaded at once, the least recently used dropped first: a character's index is a few MB, a
# local model hundreds of MB to GB
MAX_LOADED_CHARACTERS = 64
MAX_LOADED_MODELS = 2
MAX_LOADED_VOICES = 4
MAX_KEPT_SESSIONS = 64  # sessions whose turn vectors are kept between requests
WORKER_THREADS = 256  # concurrent requests in threads (a streaming reply holds one throughout)


class TimedLLM(WrappedLLM):
    """One request's view of the shared backend: counts the time spent waiting on it, and
    ends its generation (``ClientGone``) at the next chunk once ``stop`` is set."""

    def __init__(self, inner: LLM) -> None:
        super().__init__(inner)
        self.waited = 0.0
        self.called_at: float | None = None
        self.first_chunk_at: float | None = None
        self.stop = threading.Event()  # set when the request's client has gone

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        self.called_at = self.called_at or time.perf_counter()
        if isinstance(self.inner, LockedLLM):  # a client gone while queued starts no model
            chunks = self.inner.stream(messages, params, stop=self.stop)
        else:
            chunks = self.inner.stream(messages, params)
        try:
            while not self.stop.is_set():
                start = time.perf_counter()
                try:
                    chunk = next(chunks)
                except StopIteration:
                    self.waited += time.perf_counter() - start
                    if self.stop.is_set():
                        break
                    return
                now = time.perf_counter()
                self.waited += now - start
                if self.first_chunk_at is None:
                    self.first_chunk_at = now
                yield chunk
            raise ClientGone
        finally:
            getattr(chunks, "close", lambda: None)()  # the backend's lock goes with it, now

    def warm(self, prefix: Sequence[dict[str, str]]) -> str:
        start = time.perf_counter()
        try:
            return self.inner.warm(prefix)
        finally:
            self.waited += time.perf_counter() - start


@dataclass
class ServerState:
    store: Store
    keys: Keys
    backend: str = "local"
    model: str | None = None
    spec: BackendSpec | None = None  # the backend with its settings (default: backend, model)
    embedder: str = "use"
    max_body: int = MAX_BODY
    body_timeout: float = BODY_TIMEOUT  # seconds a client has to send its request body
    send_timeout: float = SEND_TIMEOUT  # seconds in all a stream may wait on its client
    limiter: RateLimiter = field(default_factory=RateLimiter)
    timings: Path | None = None  # a JSON line per request: where rolecast's time went
    models: str | None = None  # what clients may choose (see allowed.py); None: every character
    max_loaded_characters: int = MAX_LOADED_CHARACTERS
    max_loaded_models: int = MAX_LOADED_MODELS
    allowed: Allowed = field(init=False)
    # loaded once each, in the thread of the first request that needs it (see resources.py)
    _indexes: ResourceCache[str, CanonIndex] = field(init=False)
    _llms: ResourceCache[str | None, LLM] = field(init=False)
    _tts: ResourceCache[str, Any] = field(init=False)
    _broken: dict[str, int] = field(default_factory=dict)  # id -> its TOML's mtime then
    warming: threading.Thread | None = field(default=None, init=False)  # personas, at start
    _timings_lock: threading.Lock = field(default_factory=threading.Lock)  # one line at a time
    # the vectors of sessions' turns lately served: a turn reads only those added since
    # (turns never change, so another server's additions are read as they come)
    _vectors: OrderedDict[tuple[str, str, str], Any] = field(default_factory=OrderedDict)
    _vectors_lock: threading.Lock = field(default_factory=threading.Lock)
    # summaries written after replies, one at a time, off the requests
    memory_work: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="rolecast-memory")
    )

    def __post_init__(self) -> None:
        if self.spec is None:
            self.spec = BackendSpec(name=self.backend, model=self.model)
        self.backend, self.model = self.spec.name, self.spec.model
        self.allowed = Allowed.parse(self.models, self.model)
        self._indexes = ResourceCache(self.max_loaded_characters)
        self._llms = ResourceCache(self.max_loaded_models)
        self._tts = ResourceCache(MAX_LOADED_VOICES)

    def known_vectors(self, key: tuple[str, str, str], vectors: Any = None) -> Any:
        """The vectors kept for a session (key id, session id, embedder), or, given
        ``vectors``, keep them (the latest ``MAX_KEPT_SESSIONS`` sessions)."""
        with self._vectors_lock:
            if vectors is None:
                return self._vectors.get(key)
            self._vectors[key] = vectors
            self._vectors.move_to_end(key)
            while len(self._vectors) > MAX_KEPT_SESSIONS:
                self._vectors.popitem(last=False)
            return vectors

    def installed(self) -> dict[str, Path]:
        """The character packages by id, less those found broken (until they change)."""
        found = {}
        for cid, path in characters.package_dirs().items():
            if cid in self._broken and self._broken[cid] == _mtime(path / TOML):
                continue
            found[cid] = path
        return found

    def resolve(self, model: str) -> tuple[str, str | None]:
        """The character id and backend model (None: the default) a client's ``model`` names,
        if the operator allowed it; else the 404 that says nothing about the disk."""
        return self.allowed.resolve(model, self.installed())

    def character(self, cid: str) -> tuple[Character, CanonIndex]:
        """An installed character, by id (never a path), and its canon index."""
        index = self._indexes.get(cid, lambda: self._load_character(cid))
        return index.character, index

    def _load_character(self, cid: str) -> CanonIndex:
        path = characters.package_dirs().get(cid)
        if path is None:
            raise not_found(cid)
        try:
            c = load_character(path)
        except (RolecastError, OSError, ValueError, TypeError, KeyError) as exc:
            # one broken package must not break the server: skip it, and say so in the log
            self._broken[cid] = _mtime(path / TOML)
            log.warning("character package %s skipped: it does not load: %s", path, exc)
            raise not_found(cid) from None
        self._broken.pop(cid, None)
        return load_index(c, self.embedder)

    def warm_up(self) -> None:
        """Load what the first requests would otherwise wait for: every allowed character's
        index (and the embedder), the default model and its token counter; then, in the
        background while requests are already served, each character's persona in the model
        (saved, so that a later start and a switch between characters load it)."""
        started = time.perf_counter()
        loaded = []
        for cid in self.allowed.character_ids(self.installed()):
            try:
                loaded.append(self.character(cid))
            except (ApiError, RolecastError) as exc:
                log.warning("character %s not loaded: %s", cid, exc)
            except Exception:  # one character must not keep the server from starting
                log.warning("character %s not loaded", cid, exc_info=True)
        try:
            llm = self.llm(None)
            if llm.token_counter() is None:
                quicktok_counter(encoding_for_model(llm.model))
        except (ApiError, RolecastError) as exc:
            log.warning("model not loaded: %s", exc)
            return
        log.info("warmed up in %.1f s", time.perf_counter() - started)

        def personas() -> None:
            for character, index in loaded:
                try:  # one at a time, each under the model's lock: a request waits for one
                    Session(character, index, llm, order=llm.prompt_order).warm()
                except Exception:  # a persona not warmed now is warmed by its first request
                    log.warning("persona of %s not warmed", character.id, exc_info=True)

        self.warming = threading.Thread(target=personas, name="rolecast-personas", daemon=True)
        self.warming.start()

    def llm(self, model: str | None) -> LLM:
        """The backend model ``model`` (None: the server's default), loaded once and shared.
        Only names that ``resolve`` let through are asked for."""
        model = model or self.model

        def load() -> LLM:
            try:
                spec = self.spec
                assert spec is not None
                if model != spec.model:  # the adapter belongs to the model it was made for
                    spec = replace(spec, lora=None, given=spec.given - {"lora"})
                return shared(spec.with_model(model).open())
            except UnknownNameError as exc:
                log.warning("backend model %r not loaded: %s", model, exc)
                raise not_found(model or self.backend) from None

        return self._llms.get(model, load)

    def tts(self, name: str) -> Any:
        """The TTS backend ``name`` (made once, shared by requests)."""
        from ..voice.base import get_tts, tts_settings

        return self._tts.get(name, lambda: get_tts(name, **tts_settings(name)))


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


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
    model: str = ""  # as the client wrote it: resolved against what is allowed, in _prepare
    dials: dict[str, int] = field(default_factory=dict)  # "personality": Big Five dials
    turns: str = "natural"  # a group scene ("a+b+c"): who answers a line that names nobody
    next: str | None = None  # a group scene: the character who answers this line


def parse_request(body: Any, session_header: str | None) -> ChatRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_request_error")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise validate.bad("'model' must name a character (GET /v1/models lists them)", "model")
    character, _, backend_model = model.partition("@")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise validate.bad("'messages' must be a non-empty list", "messages")
    if len(raw) > MAX_MESSAGES:
        raise validate.bad(f"at most {MAX_MESSAGES} messages", "messages")
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
        name = m.get("name")
        if name is not None and not isinstance(name, str):
            where = f"messages[{i}].name"
            raise validate.bad(f"'{where}' must be a string, not {validate.kind(name)}", where)
        messages.append((m["role"], _text(m.get("content"), f"messages[{i}]"), name))
    if not any(role == "user" for role, _, _ in messages):
        raise ApiError(400, "no user message to answer", "invalid_request_error")
    updates: dict[str, Any] = {}
    for key, lo, hi in (("max_tokens", 1, MAX_TOKENS), ("max_completion_tokens", 1, MAX_TOKENS)):
        if (count := validate.integer(body, key, lo, hi)) is not None:
            updates["max_tokens"] = count
    if (seed := validate.integer(body, "seed", *validate.INT64)) is not None:
        updates["seed"] = seed
    for key, lo2, hi2 in (
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
    ):
        if (value := validate.number(body, key, lo2, hi2)) is not None:
            updates[key] = value
    if validate.integer(body, "n", 1, MAX_CHOICES) not in (None, 1):
        raise validate.bad("'n' must be 1: this server gives one choice per request", "n")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
            raise validate.bad("'stop' must be a string or up to 4 strings", "stop")
        updates["stop"] = tuple(stop)
    stream = validate.boolean(body, "stream")
    options = validate.obj(body, "stream_options")
    include_usage = validate.boolean(options, "include_usage")
    user = validate.string(body, "user")
    if session_header:
        session_id: str | None = validate.session_id(session_header, "X-Session-Id", None)
    elif user is not None:
        session_id = validate.session_id(user, "'user'", "user")
    else:
        session_id = None
    try:  # {"O": "high", "N": 2}: over the character's own [personality]
        dials = parse_dials(validate.obj(body, "personality"))
    except InputError as exc:
        raise validate.bad(f"'personality': {exc}", "personality") from None
    turns = validate.string(body, "turns") or "natural"
    if turns not in POLICIES:
        raise validate.bad(f"'turns' must be one of {', '.join(POLICIES)}", "turns")
    forced = validate.string(body, "next")
    if (turns != "natural" or forced) and "+" not in character:
        raise validate.bad("'turns' and 'next' are for a group scene: 'model': 'a+b+c'", "turns")
    return ChatRequest(
        turns=turns,
        next=forced,
        character=character.strip(),
        backend_model=backend_model.strip() or None,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        params=replace(GenerationParams(), **updates),
        session_id=session_id,
        model=model,
        dials=dials,
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


@dataclass
class GroupTurnout:
    """A group scene's turn: the scene, the line, and how much of its history is new."""

    scene: GroupScene
    line: str
    llm: TimedLLM
    before: int  # scene.history's length before this line
    prepare_s: float
    started: float = 0.0
    received: float = 0.0
    replies: list[tuple[str, str]] = field(default_factory=list)  # (character id, text)

    @property
    def session(self) -> Session:  # the first character's: memory, counter, timings
        return next(iter(self.scene.sessions.values()))


def _prepare_group(state: ServerState, key_id: str, req: ChatRequest) -> GroupTurnout:
    """``model: "a+b+c"``: a scene of these characters (each allowed, each once), its
    history from the session or the client's messages, the memory shared."""
    start = time.perf_counter()
    *earlier, (last_role, last_text, last_name) = [m for m in req.messages if m[0] != "system"]
    if last_role != "user" or not last_text.strip():
        raise ApiError(400, "the last message must be the user's line", "invalid_request_error")
    names = [n.strip() for n in req.character.split("+")]
    backend = f"@{req.backend_model}" if req.backend_model else ""
    resolved = [state.resolve(n + backend) for n in names]
    if len({cid for cid, _ in resolved}) != len(resolved):
        raise validate.bad("a group scene names each character once", "model")
    llm = TimedLLM(state.llm(resolved[0][1]))
    sessions = []
    for cid, _ in resolved:
        character, index = state.character(cid)
        character = with_dials(character, req.dials)
        sessions.append(Session(character, index, llm, params=req.params, order=llm.prompt_order))
    try:
        scene = GroupScene.of(sessions, req.turns, chime=0.3, seed=time.time_ns())
    except InputError as exc:
        raise validate.bad(str(exc), "model") from None
    forced = None
    if req.next:
        try:
            forced = find_member(req.next, scene.members).id
        except InputError as exc:
            raise validate.bad(str(exc), "next") from None
    label = "+".join(cid for cid, _ in resolved)
    history: list[Turn] = []
    first = sessions[0]
    if req.session_id is not None:
        row = state.store.session(key_id, req.session_id)
        if row is not None and row.character != label:
            raise ApiError(
                409,
                f"session {req.session_id!r} is with {row.character!r}, not {label!r}",
                "invalid_request_error",
                "session_character_mismatch",
            )
        history = [Turn(m.speaker, m.content) for m in state.store.messages(key_id, req.session_id)]
        embedder = first.index.embedder if first.index is not None else None
        scene.remember_with(
            _session_memory(state, key_id, req.session_id, row, embedder, len(history))
        )
    else:
        by_name = {
            n: s.character.name for s in sessions for n in (s.character.name, s.character.id)
        }
        for role, text, name in earlier:
            if role == "assistant":
                history += _group_lines(text, name, by_name, sessions[0].character.name)
            else:
                history.append(Turn(name or scene.user_role, text))
    scene.resume(history)
    if last_name and last_name != scene.user_role:
        scene.user_role = last_name
    line = f"/next {forced} {last_text}" if forced else last_text
    return GroupTurnout(scene, line, llm, len(history), time.perf_counter() - start, start)


def _group_lines(text: str, name: str | None, names: dict[str, str], default: str) -> list[Turn]:
    """An assistant message of a scene, as the server wrote it ("Name: line" paragraphs),
    or one message whose ``name`` says who spoke."""
    if name and name in names:
        return [Turn(names[name], text)]
    turns = []
    for part in text.split("\n\n"):
        who, sep, said = part.partition(": ")
        if sep and who.strip() in names:
            turns.append(Turn(names[who.strip()], said.strip()))
        elif part.strip():
            turns.append(Turn(default, part.strip()))
    return turns


def _group_pieces(t: GroupTurnout) -> Iterator[str]:
    """The scene's replies as one message's text: each "Name: reply", a blank line between."""
    current = None
    names = {cid: s.character.name for cid, s in t.scene.sessions.items()}
    for cid, piece in t.scene.say(t.line):
        if cid != current:
            t.replies.append((cid, ""))
            yield ("\n\n" if current is not None else "") + f"{names[cid]}: "
            current = cid
        t.replies[-1] = (cid, t.replies[-1][1] + piece)
        yield piece


def _save_group(state: ServerState, key_id: str, req: ChatRequest, t: GroupTurnout) -> None:
    if req.session_id is None:
        return
    scene = t.scene
    selves = {n for m in scene.members for n in m.names}
    new = scene.history[t.before :]
    rows = [("assistant" if turn.speaker in selves else "user", turn) for turn in new]
    memory = scene.memory
    Chats(state.store, key_id).save_turn(
        req.session_id, list(scene.sessions), rows, memory, with_state=False
    )
    if memory is not None:
        name = getattr(memory.embedder, "name", "")
        state.known_vectors((key_id, req.session_id, name), memory.vectors)
        first = t.session
        first.history = list(scene.history)
        state.memory_work.submit(_remember, state, key_id, req.session_id, first)


def _prepare(state: ServerState, key_id: str, req: ChatRequest) -> Turnout:
    start = time.perf_counter()
    *earlier, (last_role, last_text, last_name) = [m for m in req.messages if m[0] != "system"]
    if last_role != "user":
        raise ApiError(400, "the last message must be the user's line", "invalid_request_error")
    if not last_text.strip():
        raise ApiError(
            400, "empty message: the last user message has no text", "invalid_request_error"
        )
    cid, backend_model = state.resolve(req.model or req.character)
    character, index = state.character(cid)
    character = with_dials(character, req.dials)
    llm = TimedLLM(state.llm(backend_model))
    session = Session(character, index, llm, params=req.params, order=llm.prompt_order)
    if req.session_id is not None:
        row = state.store.session(key_id, req.session_id)
        if row is not None and row.character != character.id:
            raise ApiError(
                409,
                f"session {req.session_id!r} is with {row.character!r}, not {character.id!r}",
                "invalid_request_error",
                "session_character_mismatch",
            )
        for msg in state.store.messages(key_id, req.session_id):
            session.history.append(Turn(msg.speaker, msg.content))
        session.memory = _session_memory(
            state, key_id, req.session_id, row, index.embedder, len(session.history)
        )
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
    Chats(state.store, key_id).save_turn(
        req.session_id,
        [t.session.character.id],
        [
            ("user", Turn(report.line.speaker, t.line)),
            ("assistant", Turn(t.session.character.name, report.reply)),
        ],
        t.session.memory,
        with_state=False,
    )
    if t.session.memory is not None:
        name = getattr(t.session.memory.embedder, "name", "")
        state.known_vectors((key_id, req.session_id, name), t.session.memory.vectors)
        state.memory_work.submit(_remember, state, key_id, req.session_id, t.session)


def _session_memory(
    state: ServerState, key_id: str, sid: str, row: Any, embedder: Any, turns: int
) -> Memory:
    """A stored session's memory: its saved state, and the vectors of its ``turns`` turns
    (those this server keeps read from memory, only the newer ones from the store)."""
    return load_memory(
        Memory(embedder),
        _memory_state(row.memory if row is not None else ""),
        state.store,
        key_id,
        sid,
        turns,
        state.known_vectors((key_id, sid, getattr(embedder, "name", ""))),
    )


def _memory_state(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError:
        log.warning("a session's saved memory is not JSON: it starts again")
        return {}
    return data if isinstance(data, dict) else {}


def _remember(state: ServerState, key_id: str, session_id: str, session: Session) -> None:
    """After a turn is saved, off the request: fold the turns that left the history window
    into the session's summary (backend calls) and keep it, unless another server folded
    them first (the store holds the row while it checks)."""
    memory = session.memory
    assert memory is not None
    started = memory.folded
    try:
        if memory.due(session.history, session.window()) is None:
            return
        session.remember()
    except Exception:  # tried again after the next turn
        log.warning("session %s: the summary was not updated", session_id, exc_info=True)
        return

    def merge(stored: str) -> str:
        now = _memory_state(stored)
        if int(now.get("folded", 0) or 0) != started:
            return stored  # another server folded these turns already
        now.update(pieces=memory.pieces, folded=memory.folded)
        return json.dumps(now, ensure_ascii=False)

    try:
        state.store.update_memory(key_id, session_id, merge)
    except RolecastError:
        log.warning("session %s: the summary was not kept", session_id, exc_info=True)


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
    installed = await run_in_threadpool(state.installed)
    data = []
    for mid in state.allowed.ids(installed):  # what a client may ask for, and only that
        data.append(
            {
                "id": mid,
                "object": "model",
                "created": _mtime(installed[mid.partition("@")[0]]) // 10**9,
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


async def session_memory(request: Request) -> Response:
    """``GET /v1/sessions/{id}/memory``: the summary, the turns it holds and the pinned
    facts. ``POST`` with ``{"remember": "FACT"}`` pins a fact, with ``{"forget": N}`` drops
    pinned fact N (1-based, as listed); both answer with the memory as it then is."""
    state: ServerState = request.app.state.rolecast
    try:
        key_id = _admit(state, request)
        sid = validate.session_id(request.path_params["session_id"], "the session id", None)
        change: dict[str, Any] = {}
        if request.method == "POST":
            body = await _read_body(request, state.max_body, state.body_timeout)
            if (
                not isinstance(body, dict)
                or len(body) != 1
                or not {"remember", "forget"} & set(body)
            ):
                raise validate.bad(
                    'the body must be {"remember": "FACT"} or {"forget": N}', "remember"
                )
            change = body
        memory = await run_in_threadpool(_change_memory, state, key_id, sid, change)
    except ApiError as exc:
        return exc.response()
    except InputError as exc:
        return ApiError(400, public(str(exc)), "invalid_request_error").response()
    return JSONResponse(
        {
            "id": sid,
            "summary": memory.summary,
            "summarised_messages": memory.folded,
            "pins": memory.pins,
        }
    )


def _change_memory(state: ServerState, key_id: str, sid: str, change: dict[str, Any]) -> Memory:
    if state.store.session(key_id, sid) is None:  # another key's looks like none at all
        raise ApiError(404, f"no session {sid!r}", "invalid_request_error", "session_not_found")
    memory = Memory()

    def apply(stored: str) -> str:
        memory.restore(_memory_state(stored))
        if "remember" in change:
            fact = change["remember"]
            if not isinstance(fact, str):
                raise validate.bad("'remember' must be a string", "remember")
            memory.pin(fact)
        elif "forget" in change:
            n = change["forget"]
            if not isinstance(n, int) or isinstance(n, bool):
                raise validate.bad("'forget' must be the number of a pinned fact", "forget")
            memory.forget(str(n))
        return memory.dumps() if change else stored

    state.store.update_memory(key_id, sid, apply)
    return memory


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
        body = await _read_body(request, state.max_body, state.body_timeout)
        req = parse_request(body, request.headers.get(SESSION_HEADER))
        if "+" in req.character:
            return await _group_completion(request, state, key_id, req, received)
        t = await run_in_threadpool(_prepare, state, key_id, req)
        t.received = received
    except ApiError as exc:
        return exc.response()
    except InputError as exc:
        return ApiError(400, public(str(exc)), "invalid_request_error").response()
    except Exception as exc:  # a bug: still OpenAI's shape, the details in the log only
        return internal(exc, "the server could not prepare the reply").response()
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
        events = _sse(state, key_id, req, t, rid, model)
        return ReplyStream(events, _timed(t).stop, state.send_timeout, headers)
    try:
        # the model stops for a client that goes; its turn is kept only if it is still there
        reply = await run_while_connected(request.receive, _timed(t).stop, _reply, t)
        if reply is None:
            log.info("a client went before its reply was ready: its turn is not recorded")
            return Response(status_code=CLIENT_CLOSED)
        await run_in_threadpool(_save, state, key_id, req, t)
        _log_timing(state, t, None)
    except BackendError as exc:
        return ApiError(502, public(str(exc)), "upstream_error").response(headers)
    except RolecastError as exc:
        return internal(exc, "the server could not make the reply").response(headers)
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


async def _group_completion(
    request: Request, state: ServerState, key_id: str, req: ChatRequest, received: float
) -> Response:
    """A turn of a group scene (``model: "a+b+c"``): one message holding each answer as
    "Name: reply", and ``replies`` listing them (character, name, text)."""
    t = await run_in_threadpool(_prepare_group, state, key_id, req)
    t.received = received
    headers = {"X-Rolecast-Prepare-Ms": f"{(time.perf_counter() - received) * 1000:.2f}"}
    if req.session_id is not None:
        headers["X-Session-Id"] = req.session_id
    rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    model = "+".join(t.scene.sessions)
    if req.stream:
        return ReplyStream(
            _group_sse(state, key_id, req, t, rid, model), t.llm.stop, state.send_timeout, headers
        )
    try:
        text = await run_while_connected(
            request.receive, t.llm.stop, lambda: "".join(_group_pieces(t))
        )
        if text is None:
            return Response(status_code=CLIENT_CLOSED)
        await run_in_threadpool(_save_group, state, key_id, req, t)
    except BackendError as exc:
        return ApiError(502, public(str(exc)), "upstream_error").response(headers)
    except InputError as exc:
        return ApiError(400, public(str(exc)), "invalid_request_error").response(headers)
    except RolecastError as exc:
        return internal(exc, "the server could not make the reply").response(headers)
    message = {"role": "assistant", "content": text, "replies": _replies(t)}
    return JSONResponse(
        {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": _group_usage(t),
        },
        headers=headers,
    )


def _replies(t: GroupTurnout) -> list[dict[str, str]]:
    names = {cid: s.character.name for cid, s in t.scene.sessions.items()}
    return [{"character": c, "name": names[c], "content": text} for c, text in t.replies]


def _group_usage(t: GroupTurnout) -> dict[str, int]:
    prompt = completion = 0
    for cid, text in t.replies:
        s = t.scene.sessions[cid]
        if s.last is not None and s.counter is not None:
            prompt += int(s.last.assembly.parts.get("total", 0))
            completion += s.counter.count(text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def _group_sse(
    state: ServerState, key_id: str, req: ChatRequest, t: GroupTurnout, rid: str, model: str
) -> AsyncGenerator[str, None]:
    yield _chunk(rid, model, {"role": "assistant", "content": ""})
    pieces: Iterator[str] = _group_pieces(t)
    try:
        while (piece := await run_in_threadpool(next, pieces, None)) is not None:
            yield _chunk(rid, model, {"content": piece})
    except RolecastError as exc:
        body = {"error": {"message": public(str(exc)), "type": "upstream_error", "code": None}}
        yield f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
        return
    finally:
        await close(pieces)
    if t.llm.stop.is_set():
        return
    await run_in_threadpool(_save_group, state, key_id, req, t)
    yield _chunk(rid, model, {"replies": _replies(t)}, "stop")
    if req.include_usage:
        yield _usage_chunk(rid, model, _group_usage(t))
    yield "data: [DONE]\n\n"


def _reply(t: Turnout) -> str:
    for _ in t.session.say(t.line, t.as_role, report=t.report):
        pass
    assert t.session.last is not None
    return t.session.last.reply


def _timed(t: Turnout) -> TimedLLM:
    llm = t.session.llm
    assert isinstance(llm, TimedLLM)
    return llm


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
    with state._timings_lock, open(state.timings, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _usage_chunk(rid: str, model: str, usage: dict[str, int]) -> str:
    """The last chunk of a stream that asked for usage (``stream_options.include_usage``)."""
    body = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage,
    }
    return f"data: {json.dumps(body)}\n\n"


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
) -> AsyncGenerator[str, None]:
    yield _chunk(rid, model, {"role": "assistant", "content": ""})
    pieces: Iterator[str] = t.session.say(t.line, t.as_role, report=t.report)
    first_sent: float | None = None
    try:
        while (piece := await run_in_threadpool(next, pieces, None)) is not None:
            yield _chunk(rid, model, {"content": piece})
            first_sent = first_sent or time.perf_counter()
    except RolecastError as exc:  # after the first byte: an error event, as OpenAI sends one
        body = {"error": {"message": public(str(exc)), "type": "upstream_error", "code": None}}
        yield f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
        return
    finally:
        await close(pieces)  # however the stream ended: the backend's lock is released now
    if _timed(t).stop.is_set():
        return  # the client has gone (or was cut off): its turn is not recorded
    await run_in_threadpool(_save, state, key_id, req, t)  # only a complete turn is kept
    _log_timing(state, t, first_sent)
    yield _chunk(rid, model, {}, "stop")
    if req.include_usage:
        yield _usage_chunk(rid, model, _usage(t))
    yield "data: [DONE]\n\n"


async def _read_body(request: Request, limit: int, timeout: float = BODY_TIMEOUT) -> Any:
    """The JSON body, at most ``limit`` bytes, all sent within ``timeout`` seconds (else 408).
    A body that times out or is cut short is one line in the log, not a traceback."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            413, f"request body over {limit} bytes", "invalid_request_error", "too_large"
        )
    data = bytearray()
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                data += chunk
                if len(data) > limit:
                    raise ApiError(
                        413,
                        f"request body over {limit} bytes",
                        "invalid_request_error",
                        "too_large",
                    )
    except TimeoutError:
        log.warning("request body not sent within %g s (%d bytes came): 408", timeout, len(data))
        raise ApiError(
            408,
            f"the request body did not arrive within {timeout:g} s",
            "invalid_request_error",
            "request_timeout",
            headers={"Connection": "close"},  # the rest of the body is never read
        ) from None
    except ClientDisconnect:
        log.info("a client went while sending its request body (%d bytes came)", len(data))
        raise ApiError(
            CLIENT_CLOSED, "the request body was cut short", "invalid_request_error"
        ) from None
    try:
        return validate.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
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
        req = SpeechRequest.parse(await _read_body(request, state.max_body, state.body_timeout))
        data, media_type = await run_in_threadpool(synthesize, state, req)
    except ApiError as exc:
        return exc.response()
    except InputError as exc:
        return ApiError(400, public(str(exc)), "invalid_request_error").response()
    except UnknownNameError as exc:
        return ApiError(400, str(exc), "invalid_request_error", "voice_not_found").response()
    except RolecastError as exc:  # a voice's own words (an unknown voice), less any path
        return ApiError(500, public(str(exc)), "server_error").response()
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
        state.memory_work.shutdown(wait=True)  # a summary being written is kept
        state.store.close()
        # the loaded models are not closed here: the persona warm-up thread may still be
        # evaluating one, and freeing llama.cpp's context under it segfaults (seen in CI);
        # the process exit frees them

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/audio/speech", speech, methods=["POST"]),
            Route("/v1/sessions/{session_id}", session_messages),
            Route("/v1/sessions/{session_id}/memory", session_memory, methods=["GET", "POST"]),
            Route("/healthz", health),
        ],
    )
    app.state.rolecast = state
    return app
