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
from ..prompt.assemble import Budget
from ..resources import ResourceCache
from ..retrieval.hybrid import CanonIndex
from ..retrieval.images import SceneImages
from ..retrieval.index import load_index
from .access import ModelPolicy
from .chat import ChatMessage, ChatTab
from .stage import stage_html, static_dir

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
        try:
            if tab is None:
                self.llm()
            else:
                tab.session.warm()  # loads the tab's model first
        except RolecastError as exc:  # shown again, to the user, on the first message
            log.warning("could not load the model: %s", exc)

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
    def chat_view(tab: ChatTab) -> list[dict[str, str]]:
        out: list[dict[str, Any]] = []
        for i, m in enumerate(tab.messages):
            if m.role == "user":
                prefix = "" if m.speaker == tab.character.user_role else f"**{m.speaker}**: "
                out.append({"role": "user", "content": prefix + m.text})
                continue
            content = m.text or "…"
            if tab.group:  # several characters answer: each message says whose it is
                content = f"**{m.speaker}**: {content}"
            notes = []
            if len(m.alternatives) > 1 and i == len(tab.messages) - 1:
                notes.append(f"{m.choice + 1}/{len(m.alternatives)}")
            if m.stopped:
                notes.append("stopped")
            if m.notice:
                notes.append(m.notice)
            if notes:
                content += "\n\n_(" + "; ".join(notes) + ")_"
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

    def view(self, tab: ChatTab) -> Outputs:
        """chat, image, caption, canon rows, parts rows, the avatar's stage."""
        image, caption = tab.shown_image()
        return (
            self.chat_view(tab),
            image,
            caption,
            self.canon_rows(tab),
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

    def on_load(self, state: dict[str, Any] | None) -> Outputs:
        state = state if state is not None else {}
        tab = self.tab(state)
        self.warm_up(tab)
        return (state, tab.character.id, *self.character_view(tab), *self.view(tab))

    def on_pick(self, cid: str, state: dict[str, Any]) -> Outputs:
        if cid and cid != self.default and cid not in store.package_dirs():
            # an installed character's id, not a path (the store would load any package folder)
            raise InputError(f"no character {cid!r} is installed")
        current = state.get("tabs", {}).get(state.get("current"))
        if current is not None and current.streaming:
            current.stop()  # what was said so far stays in that character's chat
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
                talks = spoken.audio_file and tab.avatar() is not None
                stage = self.stage(tab, tab.last_audio()) if talks else SKIP
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
        folder = Path(tempfile.mkdtemp(prefix="rolecast-export-"))
        path = folder / f"{tab.character.id}-chat.{'json' if kind == 'json' else 'md'}"
        path.write_text(text, encoding="utf-8")
        return str(path)

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
        backend = backend.strip() or self.backend
        chosen: str | None = model.strip() or None
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
