"""``rolecast web``: the Gradio page. Handlers are methods of :class:`WebApp`, testable in process.

Shared by every browser tab: the characters' indexes, the models (one generation at a time
per model) and the voices, each loaded once (``resources.ResourceCache``). Per tab (Gradio
session state): one :class:`ChatTab` per character picked, so switching character and back
loses nothing.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..avatar import FOLDER as AVATAR
from ..backends.base import LLM, shared
from ..backends.spec import BackendSpec
from ..character import store
from ..character.package import IMAGES, load_character
from ..character.personality import FACTORS, format_dials, parse_level
from ..errors import InputError, RolecastError
from ..files import write_atomic
from ..prompt.assemble import Budget
from ..resources import ResourceCache
from ..retrieval.hybrid import CanonIndex
from ..retrieval.images import SceneImages
from ..retrieval.index import load_index
from .access import ModelPolicy
from .chat import ChatMessage, ChatTab
from .stage import file_url, stage_html, static_dir
from .views import Card, bubble_html, canon_html, gallery_html

log = logging.getLogger(__name__)

STREAM_INTERVAL = 0.05  # seconds between chat updates while a reply streams (pieces coalesce)
SKIP = object()  # an output left as it is (the page turns it into gr.skip())
CANON_COLUMNS = ["scene", "title", "score", "dense", "bm25", "sent"]
PARTS_COLUMNS = ["part", "tokens"]
Outputs = tuple[Any, ...]


class WebApp:
    def __init__(
        self,
        default: str | None = None,
        backend: BackendSpec | str = "local",
        model: str | None = None,
        embedder: str = "use",
        allowed_models: Iterable[str] = (),
        save: bool = True,
    ) -> None:
        self.default = store.load(default or store.DEFAULT_CHARACTER).id
        self.spec = (
            backend if isinstance(backend, BackendSpec) else BackendSpec(name=backend, model=model)
        )
        self.backend, self.model, self.embedder = self.spec.name, self.spec.model, embedder
        # what the settings panel may load: never a path or hf: download the operator did not name
        self.models = ModelPolicy(self.model, tuple(allowed_models))
        # loaded once each, by the first tab that needs it; loading one holds up no other
        self._indexes: ResourceCache[str, tuple[CanonIndex, SceneImages]] = ResourceCache()
        self._llms: ResourceCache[tuple[str, str | None], LLM] = ResourceCache()
        self.stream_interval = STREAM_INTERVAL
        # speech: one speaker per character and chat model, shared by tabs (one at a time)
        self._speakers: ResourceCache[tuple[str, str, str | None], tuple[Any, threading.Lock]]
        self._speakers = ResourceCache()
        self._audio_dir: Path | None = None
        self._export_dir: Path | None = None
        self._allowed: list[str] | None = None
        self._secret: bytes | None = None  # the key that seals chat ids kept by browsers
        self._importing = threading.Lock()
        self._cards: dict[str, tuple[float, Card]] = {}  # id -> (character.toml's mtime, card)
        self._warming: dict[str, tuple[str, float]] = {}  # character -> (what is done, since)
        # every chat is saved in the server's store, opened with the first tab (save=False: none)
        self.save = save
        self._chats: Any = None
        self._chats_lock = threading.Lock()

    def chats(self) -> Any:
        """The store's chats (``chats.Chats``), or None when chats are not saved or the store
        cannot be opened (the page works on; the reason is logged)."""
        if not self.save:
            return None
        with self._chats_lock:
            if self._chats is None:
                from ..chats import Chats, default_store

                try:
                    self._chats = Chats(default_store())
                except RolecastError as exc:
                    log.warning("chats will not be saved: %s", exc)
                    self.save = False
                    return None
            return self._chats

    # ------------------------------------------------------------ shared resources

    def characters(self) -> list[tuple[str, str]]:
        """(label, id) for the picker."""
        out = []
        for cid, path in store.package_dirs().items():
            try:
                c = load_character(path)
            except RolecastError as exc:
                log.warning("skipping character %s: %s", cid, exc)
                continue
            out.append((f"{c.name} ({cid})", cid))
        return out

    def index(self, cid: str) -> tuple[CanonIndex, SceneImages]:
        def load() -> tuple[CanonIndex, SceneImages]:
            index = load_index(store.load(cid), self.embedder)
            return index, SceneImages(index)

        return self._indexes.get(cid, load)

    def llm(self, backend: str | None = None, model: str | None = None) -> LLM:
        name, chosen = backend or self.backend, model if model is not None else self.model

        def load() -> LLM:
            spec = self.spec
            if name != spec.name:  # another backend picked in the settings: its defaults
                spec = replace(spec, name=name, model=None, lora=None, given=frozenset())
            elif chosen != spec.model:  # the adapter belongs to the model it was made for
                spec = replace(spec, lora=None, given=spec.given - {"lora"})
            return shared(spec.with_model(chosen).open())

        return self._llms.get((name, chosen), load)

    def warm_up(self, tab: ChatTab | None = None) -> None:
        """Load the model in the background once a page is shown, with the shown
        character's persona ready in it (saved or evaluated), so the first reply is quicker."""
        threading.Thread(
            target=self._load_quietly, args=(tab,), name="rolecast-warm-up", daemon=True
        ).start()

    def _load_quietly(self, tab: ChatTab | None) -> None:
        key = tab.key if tab is not None else ""
        if self._warming.get(key, ("",))[0] != "ready":
            self._warming[key] = ("loading the model", time.monotonic())
        try:
            if tab is None:
                self.llm()
            else:
                session = tab.session  # loads the tab's model first
                if self._warming[key][0] != "ready":
                    self._warming[key] = ("reading the persona into the model", time.monotonic())
                session.warm()
        except Exception as exc:  # noqa: BLE001 - shown again, to the user, on the first message
            log.warning("could not load the model: %s", exc)
            self._warming[key] = (f"the model could not be loaded: {exc}", time.monotonic())
            return
        self._warming[key] = ("ready", time.monotonic())

    def status(self, state: dict[str, Any]) -> tuple[str, bool]:
        """What the page is doing for the tab on show, and whether it is done: the model
        loading (with the seconds so far), then ready."""
        tab = state.get("tabs", {}).get(state.get("current"))
        key = tab.key if tab is not None else ""
        if tab is not None and tab.group:  # a scene is not warmed: nothing to say
            return "", True
        what, since = self._warming.get(key, ("loading the model", time.monotonic()))
        name = tab.character.name if tab is not None else "the character"
        if what == "ready":
            return f"{name} is ready", True
        if what.startswith("the model could not"):
            return what, True
        return f"{what} for {name}… {time.monotonic() - since:.0f} s", False

    @property
    def audio_dir(self) -> Path:
        """Where spoken replies are written (the page serves files from here)."""
        if self._audio_dir is None:
            self._audio_dir = Path(tempfile.mkdtemp(prefix="rolecast-audio-"))
        return self._audio_dir

    def served_paths(self) -> list[Path]:
        """The folders the page's file route may serve: every package's images and avatar
        folders and the spoken replies. Never a whole package (persona, canon, settings)."""
        dirs = store.package_dirs().values()
        return [
            *(p / IMAGES for p in dirs),
            *(p / AVATAR for p in dirs),
            self.audio_dir,
            static_dir(),  # the avatar's renderer (vrm.js)
        ]

    def allowed_paths(self) -> list[str]:
        """The list the page's file route checks, kept by this app: a character imported from
        the page adds its folders to it, so its pictures show without a restart."""
        if self._allowed is None:
            self._allowed = [str(p) for p in self.served_paths()]
        return self._allowed

    @property
    def export_dir(self) -> Path:
        if self._export_dir is None:
            self._export_dir = Path(tempfile.mkdtemp(prefix="rolecast-export-"))
        return self._export_dir

    def speaker(self, state: dict[str, Any], cid: str) -> tuple[Any, threading.Lock]:
        """The character's voice, translating with the tab's chat model where needed."""
        from ..voice.speaker import Speaker
        from ..voice.translate import Translator

        backend, model = state.get("backend") or self.backend, state.get("model")
        key = (cid, backend, model if model is not None else self.model)

        def make() -> tuple[Any, threading.Lock]:
            character = self.index(cid)[0].character
            speaker = Speaker.for_character(
                character, translator=Translator(self._tab_llm(state)())
            )
            return speaker, threading.Lock()

        return self._speakers.get(key, make)

    # ------------------------------------------------------------ per-tab state

    def tab(self, state: dict[str, Any], cid: str | None = None) -> ChatTab:
        cid = cid or state.get("current") or self.default
        tabs: dict[str, ChatTab] = state.setdefault("tabs", {})
        if "+" in cid:  # a group scene's tab, made by on_scene
            state["current"] = cid
            return tabs[cid]
        state["base"] = cid
        if cid not in tabs:
            index, images = self.index(cid)
            tabs[cid] = ChatTab(
                index.character, index, self._tab_llm(state), images, chats=self.chats()
            )
            tabs[cid].set_dials(state.get("dials", {}))
        state["current"] = cid
        return tabs[cid]

    def _tab_llm(self, state: dict[str, Any]) -> Callable[[], LLM]:
        """The tab's model, got on its first message (a page is shown before a model loads)."""
        backend, model = state.get("backend"), state.get("model")
        return lambda: self.llm(backend, model)

    # ------------------------------------------------------------ views

    @staticmethod
    def chat_view(tab: ChatTab) -> list[dict[str, Any]]:
        """The chat's messages, each a bubble saying whose it is (name and face; the user's
        role name; narration apart), the scene frame a reply matched under it, and an audio
        player after a spoken reply."""
        out: list[dict[str, Any]] = []
        faces: dict[str, str | None] = {}  # each speaker's picture, looked up once
        for i, m in enumerate(tab.messages):
            if m.role == "user":
                kind = "narration" if tab.character.is_narrator(m.speaker) else "user"
                content = bubble_html(m.speaker, None, m.text, kind)
                out.append({"role": "user", "content": content})
                continue
            notes = []
            if len(m.alternatives) > 1 and i == len(tab.messages) - 1:
                notes.append(f"{m.choice + 1}/{len(m.alternatives)}")
            if m.stopped:
                notes.append("stopped")
            if m.notice:
                notes.append(m.notice)
            if m.speaker not in faces:
                faces[m.speaker] = tab.face(m.speaker)
            face = faces[m.speaker]
            frame = file_url(m.image) if m.image else None
            caption = Path(m.image).stem if m.image else ""
            content = bubble_html(
                m.speaker, file_url(face) if face else None, m.text, "reply", frame, caption, notes
            )
            out.append({"role": "assistant", "content": content})
            if m.audio_file:  # an audio player under the reply
                out.append({"role": "assistant", "content": {"path": m.audio_file}})
        return out

    @staticmethod
    def canon_rows(tab: ChatTab) -> list[list[Any]]:
        last = _last_reply(tab)
        return [[row[c] for c in CANON_COLUMNS] for row in last.canon] if last else []

    @staticmethod
    def parts_rows(tab: ChatTab) -> list[list[Any]]:
        last = _last_reply(tab)
        return [[k, v] for k, v in last.parts.items()] if last else []

    @staticmethod
    def canon_view(tab: ChatTab) -> str:
        """The canon behind the last reply, as lines (HTML; "" before any reply)."""
        last = _last_reply(tab)
        if last is None:
            return ""
        character = tab.character
        if tab.group:  # each answer's canon is its speaker's
            character = next(
                (s.character for s in tab.sessions if s.character.is_self(last.speaker)),  # type: ignore[attr-defined]
                character,
            )
        return canon_html(last.canon, character)

    def view(self, tab: ChatTab) -> Outputs:
        """chat, image, caption, canon (lines), parts rows, the avatar's stage."""
        image, caption = tab.shown_image()
        return (
            self.chat_view(tab),
            image,
            caption,
            self.canon_view(tab),
            self.parts_rows(tab),
            self.stage(tab),
        )

    def stage(self, tab: ChatTab, say: str | None = None) -> str:
        """The avatar's stage (HTML, "" without an avatar); ``say``: a WAV it speaks now."""
        return stage_html(tab.avatar(), self.audio_dir, say)

    def character_view(self, tab: ChatTab) -> Outputs:
        """portrait, header markdown, user role."""
        c = tab.character
        if tab.group:
            names = " · ".join(s.character.name for s in tab.sessions)  # type: ignore[attr-defined]
            return (
                tab.shown_image()[0],
                f"### {names}\n\nA scene: name someone to have them answer.",
                c.user_role,
            )
        header = f"### {c.name}\n\n{c.description}".strip()
        if tab.greeting():
            header += f"\n\n> {tab.greeting()}"
        return tab.shown_image()[0], header, c.user_role

    # ------------------------------------------------------------ handlers

    def _seal(self, user: str, cid: str, sid: str) -> str:
        """What proves a chat id in a browser's memory was given to this user by this server:
        an HMAC of (user, character, chat) under the server's own key, never sent out."""
        import hashlib
        import hmac

        if self._secret is None:
            self._secret = self.browser_secret().encode("ascii")
        msg = f"{user}\0{cid}\0{sid}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def _resume(self, state: dict[str, Any], cid: str, remembered: Any, user: str) -> None:
        """A character's tab opened for the first time in this page goes on with the chat
        this browser had with it (``remembered``: what ``remembered()`` gave the browser), when
        its seal shows this server gave that chat to this user."""
        import hmac

        fresh = cid not in state.get("tabs", {})
        tab = self.tab(state, cid)
        chats = remembered.get("chats") if isinstance(remembered, dict) else None
        entry = chats.get(cid) if fresh and isinstance(chats, dict) else None
        if not isinstance(entry, dict):
            return
        sid, seal = entry.get("id"), entry.get("seal")
        if isinstance(sid, str) and isinstance(seal, str):
            if hmac.compare_digest(seal, self._seal(user, cid, sid)):
                tab.resume(sid)

    def remembered(self, state: dict[str, Any], remembered: Any, user: str = "") -> dict[str, Any]:
        """What the browser keeps: each character's chat in this page, sealed for this user,
        so a reload goes on with it (and nobody else's browser can name it)."""
        chats = dict(remembered.get("chats", {})) if isinstance(remembered, dict) else {}
        for cid, tab in state.get("tabs", {}).items():
            if not tab.group and tab.session_id:
                chats[cid] = {"id": tab.session_id, "seal": self._seal(user, cid, tab.session_id)}
            elif not tab.group and not tab.messages:
                chats.pop(cid, None)  # a new chat: the next reload starts fresh too
        return {"chats": chats}

    @staticmethod
    def browser_secret() -> str:
        """The server's key for sealing the chat ids browsers keep: made once, kept in
        ``$ROLECAST_HOME/web-secret`` (readable by the user only), so seals outlive a
        restart. It never leaves the server."""
        import secrets

        from ..config import home

        path = home() / "web-secret"
        try:
            text = path.read_text(encoding="ascii").strip()
            if len(text) >= 32:
                return text
        except (OSError, UnicodeDecodeError):
            pass
        text = secrets.token_hex(32)
        try:
            write_atomic(path, text, mode=0o600)
        except RolecastError as exc:  # a read-only home: chats are remembered until a restart
            log.warning("the page's secret is not kept: %s", exc)
        return text

    def on_load(
        self, state: dict[str, Any] | None, remembered: Any = None, user: str = ""
    ) -> Outputs:
        state = state if state is not None else {}
        self._resume(state, state.get("current") or self.default, remembered, user)
        tab = self.tab(state)
        self.warm_up(tab)
        return (state, tab.character.id, *self.character_view(tab), *self.view(tab))

    def on_pick(
        self, cid: str, state: dict[str, Any], remembered: Any = None, user: str = ""
    ) -> Outputs:
        if cid and cid != self.default and cid not in store.package_dirs():
            # an installed character's id, not a path (the store would load any package folder)
            raise InputError(f"no character {cid!r} is installed")
        current = state.get("tabs", {}).get(state.get("current"))
        if current is not None and current.streaming:
            current.stop()  # what was said so far stays in that character's chat
        self._resume(state, cid or self.default, remembered, user)
        tab = self.tab(state, cid)
        self.warm_up(tab)
        return (state, *self.character_view(tab), *self.view(tab))

    def on_scene(self, others: list[str] | None, state: dict[str, Any]) -> Outputs:
        """The "scene with" picker: the character picked, with these others, in one group
        scene (a tab of its own, kept like a character's); none: back to the one-to-one chat."""
        base = state.get("base") or self.default
        ids = list(dict.fromkeys([base, *(others or [])]))
        for cid in ids:
            if cid != self.default and cid not in store.package_dirs():
                raise InputError(f"no character {cid!r} is installed")
        current = state.get("tabs", {}).get(state.get("current"))
        if current is not None and current.streaming:
            current.stop()
        if len(ids) == 1:
            tab = self.tab(state, base)
        else:
            from .group import GroupTab

            key = "+".join(ids)
            tabs = state.setdefault("tabs", {})
            if key not in tabs:
                members = [(self.index(cid)[0].character, self.index(cid)[0]) for cid in ids]
                tabs[key] = GroupTab(members, self._tab_llm(state)(), chats=self.chats())
                tabs[key].set_dials(state.get("dials", {}))
            tab = self.tab(state, key)
        return (state, *self.character_view(tab), *self.view(tab))

    def _run(self, state: dict[str, Any], stream: Iterator[ChatMessage]) -> Iterator[Outputs]:
        """While a reply streams only the chat changes, at most every ``stream_interval``
        seconds; the image, canon and token parts follow once it is complete."""
        tab = self.tab(state)
        cid = tab.key
        shown = 0.0
        for _ in stream:
            if state.get("current") != cid:  # the user picked another character: stop here
                tab.stop()
                return
            now = time.perf_counter()
            if now - shown >= self.stream_interval:
                shown = now
                yield ("", self.chat_view(tab), SKIP, SKIP, SKIP, SKIP, SKIP)
        # the whole reply first, on its own: the canon panel (a long list of lines) follows in
        # the next update, so laying it out does not hold the reply back
        yield ("", self.chat_view(tab), SKIP, SKIP, SKIP, SKIP, SKIP)
        yield ("", *self.view(tab))
        try:  # while the reply is read: what left the history window goes to the summary
            tab.remember()
        except RolecastError as exc:
            log.warning("the conversation's summary was not updated: %s", exc)
        if state.get("voice") and state.get("current") == cid:
            speaker, lock = self.speaker(state, cid)
            with lock:
                spoken = tab.speak_last(speaker, self.audio_dir)
            if spoken is not None:  # the avatar says it as its player appears
                avatar = tab.avatar() if spoken.audio_file else None
                stage = stage_html(avatar, self.audio_dir, tab.last_audio()) if avatar else SKIP
                yield ("", self.chat_view(tab), SKIP, SKIP, SKIP, SKIP, stage)

    def on_send(
        self, text: str, role: str, narrator: bool, state: dict[str, Any]
    ) -> Iterator[Outputs]:
        tab = self.tab(state)
        as_role = _as_role(tab, role, narrator)
        tab.check(text)  # refused before anything changes: the text stays in the box
        yield from self._run(state, tab.send(text, as_role))

    def on_stop(self, state: dict[str, Any]) -> None:
        tabs = state.get("tabs", {})
        tab = tabs.get(state.get("current"))
        if tab is not None:
            tab.stop()

    def on_regenerate(self, state: dict[str, Any]) -> Iterator[Outputs]:
        yield from self._run(state, self.tab(state).regenerate())

    def on_edit(self, text: str, state: dict[str, Any]) -> Iterator[Outputs]:
        yield from self._run(state, self.tab(state).edit_last(text))

    def on_swipe(self, step: int, state: dict[str, Any]) -> Outputs:
        tab = self.tab(state)
        tab.swipe(step)
        return self.view(tab)

    def on_new(self, state: dict[str, Any]) -> Outputs:
        tab = self.tab(state)
        tab.new_chat()
        return self.view(tab)

    def on_voice(self, enabled: bool, state: dict[str, Any]) -> str:
        """The voice toggle: replies are spoken (an audio player under each) while it is on.
        The voice is made when it is turned on, so a missing TTS fails here, clearly."""
        state["voice"] = bool(enabled)
        if not enabled:
            return "replies are not spoken"
        tab = self.tab(state)
        try:
            speaker, _ = self.speaker(state, tab.character.id)
        except RolecastError:
            state["voice"] = False
            raise
        lang = speaker.voice_language or "any language"
        return f"replies are spoken: {speaker.tts.name} voice {speaker.voice} ({lang})"

    def on_export(self, kind: str, state: dict[str, Any]) -> str:
        tab = self.tab(state)
        if not tab.messages:
            raise InputError("nothing to export yet")
        text = tab.export_json() if kind == "json" else tab.export_markdown()
        folder = Path(tempfile.mkdtemp(dir=self.export_dir))
        path = folder / f"{tab.character.id}-chat.{'json' if kind == 'json' else 'md'}"
        path.write_text(text, encoding="utf-8")
        return str(path)

    # ------------------------------------------------------------ the gallery

    def cards(self) -> list[Card]:
        """Every installed character as a gallery card, in the picker's order."""
        out = []
        for cid, path in store.package_dirs().items():
            try:
                stamp = (path / "character.toml").stat().st_mtime
            except OSError:
                continue
            known = self._cards.get(cid)
            if known is None or known[0] != stamp:  # read again only when the package changed
                try:
                    c = load_character(path)
                except RolecastError:
                    continue  # logged by characters()
                picture = ChatTab.portrait_of(c)
                greeting = c.greetings[0] if c.greetings else c.description
                card = Card(cid, c.name, c.source, greeting, file_url(picture) if picture else None)
                known = self._cards[cid] = (stamp, card)
            out.append(known[1])
        return out

    def gallery_view(self, state: dict[str, Any] | None = None) -> str:
        current = (state or {}).get("base") or self.default
        return gallery_html(self.cards(), current)

    @staticmethod
    def on_gallery_pick(cid: str) -> str:
        """A card clicked: its id, which the picker takes from here (an id that is not
        installed is refused there)."""
        return cid.strip()

    def on_import(self, path: str | None, state: dict[str, Any]) -> tuple[str, str, list[Any], str]:
        """A file dropped on the page: a character card (PNG, JSON, CHARX) or a ChatHaruhi role
        (zip, jsonl), read by the same importers as ``rolecast import``. Saved as a new
        character (under a free id when its own is taken), never over another. Returns the
        notice, the gallery, the picker's choices and the new id (the picker shows it)."""
        from ..character.package import save_character
        from ..formats.detect import import_source

        if not path:
            raise InputError("no file was dropped")
        result = import_source(str(path), cid=None)
        c = result.character
        base, n = c.id, 2
        with self._importing:  # two drops at once never take the same folder
            taken = store.package_dirs()
            while c.id in taken or c.id == self.default or store.user_package_path(c.id).exists():
                suffix = f"-{n}"
                c.id, n = base[: 64 - len(suffix)] + suffix, n + 1
            dest = store.user_package_path(c.id)
            save_character(c, dest, images=result.images)
        self._cards.clear()
        for folder in (dest / IMAGES, dest / AVATAR):  # its pictures show from now on
            if str(folder) not in self.allowed_paths():
                self.allowed_paths().append(str(folder))
        notes = [f"imported {c.name} as {c.id}: {len(c.scenes)} scenes"]
        if c.id != base:
            notes.append(f"{base!r} was taken")
        notes += [str(w) for w in result.warnings][:3]
        if result.problems:
            notes.append(f"{len(result.problems)} lines skipped")
        state["base"] = c.id
        return "; ".join(notes), self.gallery_view(state), self.characters(), c.id

    def on_export_card(self, state: dict[str, Any]) -> str:
        """The character on show as a character card (PNG with the card inside, as other
        role-play apps read it); the path of the file to download."""
        from ..character.package import package_root
        from ..formats.detect import export_bytes

        tab = self.tab(state)
        if tab.group:
            raise InputError("pick one character to export, not a scene")
        c = tab.character
        root = package_root(c)
        data = export_bytes(c, "card-png", root / IMAGES if root else None)
        folder = Path(tempfile.mkdtemp(dir=self.export_dir))
        return str(write_atomic(folder / f"{c.id}.card.png", data))

    def on_settings(
        self,
        backend: str,
        model: str,
        canon: float,
        history: float,
        *rest: Any,
    ) -> str:
        """The settings panel's Apply: backend, model, budgets and the Big Five sliders (one
        per factor in O C E A N order, 0 for the character's own), then the page state."""
        *levels, state = rest
        backend = (backend or "").strip() or self.backend
        chosen: str | None = (model or "").strip() or None
        if canon < 0 or history < 0:
            raise InputError("token budgets must not be negative")
        if len(levels) not in (0, len(FACTORS)):
            raise InputError(f"the Big Five sliders are {len(FACTORS)}, not {len(levels)}")
        dials = {f: parse_level(v, f) for f, v in zip(FACTORS, levels or [0] * 5, strict=True) if v}
        self.models.check(chosen)  # before anything loads: no path or download from the page
        llm = self.llm(backend, chosen)  # an unknown backend or model fails here, clearly
        state["backend"], state["model"] = backend, chosen
        for tab in state.get("tabs", {}).values():
            if tab.streaming:
                raise InputError("a reply is still coming: wait for it or press Stop")
            for session in getattr(tab, "sessions", [tab.session]):
                session.llm = llm
                total = session.budget.total if session.budget else None
                session.budget = Budget(int(canon), int(history), total)
            tab.set_dials(dials)
        state["dials"] = dials
        return (
            f"backend {backend}, model {llm.model}, canon {int(canon)}, history {int(history)}, "
            f"dials {format_dials(dials)}"
        )


def _last_reply(tab: ChatTab) -> ChatMessage | None:
    return next((m for m in reversed(tab.messages) if m.role == "assistant"), None)


def _as_role(tab: ChatTab, role: str, narrator: bool) -> str | None:
    if narrator:
        return tab.character.narrators[0] if tab.character.narrators else "旁白"
    role = (role or "").strip()
    return None if not role or role == tab.character.user_role else role
