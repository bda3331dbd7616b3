"""One browser tab's group scene: several characters, one conversation (``group.GroupScene``).

:class:`GroupTab` offers the page what :class:`~rolecast.web.chat.ChatTab` does for one
character, where it makes sense for a scene: send (each answer its own message under its
speaker's name, the canon behind each), stop, new chat, exports, saving and memory. Regenerate,
swipe and edit are one character's; in a scene they say so.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..backends.base import LLM
from ..character.model import Character
from ..character.personality import with_dials
from ..errors import InputError, RolecastError
from ..group.scene import GroupScene
from ..memory import Memory
from ..retrieval.hybrid import CanonIndex
from ..session import Session
from .chat import ChatMessage, ChatTab

NOT_IN_A_SCENE = "in a group scene each answer stands: send another line instead"


class GroupTab:
    group = True

    def __init__(
        self,
        members: Sequence[tuple[Character, CanonIndex]],
        llm: LLM,
        chats: Any = None,
        order: str | None = None,
    ) -> None:
        self.members = list(members)
        self.bases = [c for c, _ in members]
        self.llm, self.order, self.chats = llm, order, chats
        self.messages: list[ChatMessage] = []
        self.streaming = False
        self._stop = threading.Event()
        self.last_timing: dict[str, float] = {}
        self.session_id: str | None = None
        self.save_problem = ""
        self._saved = 0
        self.scene = self._scene(self.bases)

    def _scene(self, characters: Sequence[Character], history: Sequence[Any] = ()) -> GroupScene:
        order = self.order or self.llm.prompt_order
        sessions = [
            Session(c, index, self.llm, order=order)  # type: ignore[arg-type]
            for c, (_, index) in zip(characters, self.members, strict=True)
        ]
        scene = GroupScene.of(sessions, "natural", chime=0.3, seed=time.time_ns())
        first = sessions[0]
        scene.remember_with(Memory(first.index.embedder if first.index is not None else None))
        scene.resume(history)
        return scene

    # ------------------------------------------------------------ what the page reads

    @property
    def key(self) -> str:
        return "+".join(c.id for c in self.bases)

    @property
    def character(self) -> Character:
        """The first character: the scene's user role, narrators and picture."""
        return next(iter(self.scene.sessions.values())).character

    @property
    def sessions(self) -> list[Session]:
        return list(self.scene.sessions.values())

    @property
    def session(self) -> Session:
        return self.sessions[0]

    def names(self) -> list[str]:
        return [s.character.name for s in self.sessions]

    def portrait(self) -> str | None:
        for s in self.sessions:
            found = ChatTab.portrait_of(s.character)
            if found:
                return found
        return None

    def greeting(self) -> str:
        return ""

    def face(self, speaker: str) -> str | None:
        for s in self.sessions:
            if s.character.is_self(speaker):
                return ChatTab.portrait_of(s.character)
        return None

    def avatar(self) -> None:
        return None  # a scene's voices are several: no one talks on the stage (yet)

    def shown_image(self) -> tuple[str | None, str]:
        portrait = self.portrait()
        return portrait, " · ".join(self.names())

    def set_dials(self, dials: Mapping[str, int]) -> None:
        characters = [with_dials(c, dials) for c in self.bases]
        if [c.personality for c in characters] != [s.character.personality for s in self.sessions]:
            self.llm, budget = self.session.llm, self.session.budget  # as the settings left them
            memory = self.scene.memory
            self.scene = self._scene(characters, self.scene.history)
            for s in self.sessions:
                s.budget = budget
            if memory is not None:
                self.scene.remember_with(memory)

    # ------------------------------------------------------------ actions

    def check(self, text: str) -> str:
        if self.streaming:
            raise InputError("a reply is still coming: wait for it or press Stop")
        return ChatTab.check_text(text)

    def stop(self) -> None:
        self._stop.set()

    def send(self, text: str, as_role: str | None = None) -> Iterator[ChatMessage]:
        """The line, then each answer as its own message, yielded as it grows."""
        text = self.check(text)
        self.messages.append(ChatMessage("user", as_role or self.scene.user_role, [text]))
        names = {cid: s.character.name for cid, s in self.scene.sessions.items()}
        replies: list[tuple[str, ChatMessage]] = []
        self._stop.clear()
        self.streaming = True
        start = time.perf_counter()
        stream = self.scene.say(text, as_role)
        try:
            for cid, piece in stream:
                if not replies or replies[-1][0] != cid:
                    replies.append((cid, ChatMessage("assistant", names[cid], [""])))
                    self.messages.append(replies[-1][1])
                reply = replies[-1][1]
                reply.alternatives[0] += piece
                yield reply
                if self._stop.is_set():
                    reply.stopped = True
                    break
        finally:
            stream.close()
            self.streaming = False
        for cid, reply in replies:  # the canon behind each answer, from its speaker's turn
            last = self.scene.sessions[cid].last
            if last is not None and not reply.stopped:
                reply.canon = ChatTab.canon_of(last, self.scene.history)
                reply.parts = dict(last.assembly.parts)
        self.save()
        if self.save_problem and replies:
            replies[-1][1].notice = self.save_problem
        self.last_timing = {"generate_s": time.perf_counter() - start}
        if replies:
            yield replies[-1][1]

    def regenerate(self) -> Iterator[ChatMessage]:
        raise InputError(NOT_IN_A_SCENE)

    def edit_last(self, text: str) -> Iterator[ChatMessage]:
        raise InputError(NOT_IN_A_SCENE)

    def swipe(self, step: int) -> ChatMessage:
        raise InputError(NOT_IN_A_SCENE)

    def speak_last(self, speaker: Any, folder: Path) -> ChatMessage | None:
        return None  # a scene's voices are several: not spoken (yet)

    def new_chat(self) -> None:
        if self.streaming:
            self.stop()
        self.messages.clear()
        self.session_id, self._saved = None, 0
        self.scene = self._scene([s.character for s in self.sessions])

    def remember(self) -> str:
        done = self.scene.remember()
        if done != "none":
            self.save()
        return done

    def save(self) -> None:
        """The scene's new turns into the store (each answer under its speaker's name)."""
        if self.chats is None:
            return
        history = self.scene.history
        selves = {n for m in self.scene.members for n in m.names}
        try:
            if self.session_id is None:
                self.session_id = self.chats.start(list(self.scene.sessions), {"from": "web"})
            rows = [
                ("assistant" if t.speaker in selves else "user", t) for t in history[self._saved :]
            ]
            self.chats.save_turn(
                self.session_id, list(self.scene.sessions), rows, self.scene.memory
            )
        except RolecastError as exc:
            self.save_problem = f"not saved: {exc}"
            return
        self._saved, self.save_problem = len(history), ""

    # ------------------------------------------------------------ exports

    def export_json(self) -> str:
        return json.dumps(
            {
                "characters": [
                    {"id": s.character.id, "name": s.character.name} for s in self.sessions
                ],
                "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "messages": [asdict(m) | {"text": m.text} for m in self.messages],
            },
            ensure_ascii=False,
            indent=2,
        )

    def export_markdown(self) -> str:
        out = [f"# {' · '.join(self.names())}\n"]
        out += [f"**{m.speaker}**: {m.text}\n" for m in self.messages]
        return "\n".join(out)
