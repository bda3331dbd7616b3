"""One browser tab's conversation with one character, without any web framework.

:class:`ChatTab` wraps a :class:`~rolecast.session.Session` with what the page needs: messages
with alternative replies (regenerate keeps them, swipe moves between them), stop that keeps
what was said so far, edit of the last message, the canon behind each reply, the scene image,
and exports. The Gradio app (``web.app``) only wires these methods to the page.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..avatar import Avatar
from ..backends.base import LLM
from ..character.model import Character
from ..character.package import package_image, package_root
from ..character.personality import with_dials
from ..errors import InputError, RolecastError
from ..memory import Memory
from ..prompt.assemble import Turn
from ..retrieval.hybrid import CanonIndex
from ..retrieval.images import SceneImages
from ..session import Session

log = logging.getLogger(__name__)

MAX_CHARS = 2000  # a longer message is refused with a notice (the prompt budget is in tokens)
NEW_CHAT_WAIT_S = 5.0  # how long New chat waits for a turn to finish keeping its reply


@dataclass
class ChatMessage:
    role: str  # "user" or "assistant"
    speaker: str
    alternatives: list[str]
    choice: int = 0
    canon: list[dict[str, Any]] = field(default_factory=list)  # the scenes behind a reply
    parts: dict[str, int] = field(default_factory=dict)  # prompt tokens per part
    image: str | None = None  # file to show with a reply: a scene frame
    image_score: float | None = None
    stopped: bool = False  # the reply was stopped before it ended
    notice: str = ""  # something the page should say about this message (a missing image)
    audio: dict[int, str] = field(default_factory=dict)  # alternative -> WAV file of it spoken

    @property
    def text(self) -> str:
        return self.alternatives[self.choice]

    @property
    def audio_file(self) -> str | None:
        """The shown alternative spoken, when it has been."""
        return self.audio.get(self.choice)


class ChatTab:
    def __init__(
        self,
        character: Character,
        index: CanonIndex,
        llm: LLM | Callable[[], LLM],
        images: SceneImages | None = None,
        order: str | None = None,
        chats: Any = None,
    ) -> None:
        self.character, self.index, self.order = character, index, order
        self.base = character  # as its package has it: the dials apply over this
        self._llm = llm
        self._session: Session | None = None
        self._making = threading.Lock()
        self.images = images if images is not None else SceneImages(index)
        self.messages: list[ChatMessage] = []
        self.streaming = False
        self._stop = threading.Event()
        self.last_timing: dict[str, float] = {}
        self._spoken = 0  # replies spoken, for their file names
        # where the chat is saved (a chats.Chats; None: not saved), its id once it has one,
        # and how many turns of the history the store holds as they are now
        self.chats = chats
        self.session_id: str | None = None
        self.saved = 0
        self._resumed: Any = None  # a saved chat (chats.Saved) waiting for the session
        self._stored = 0  # messages the store held after this tab's last write
        self._turn = threading.Lock()  # held by a turn from its line to its kept reply
        self.save_problem = ""

    @property
    def session(self) -> Session:
        """Made on first use: a page can show a character before its model has loaded."""
        with self._making:  # the page's warm-up and a first message may ask at once
            if self._session is None:
                llm = self._llm if isinstance(self._llm, LLM) else self._llm()
                order = self.order or llm.prompt_order
                self._session = Session(self.character, self.index, llm, order=order)  # type: ignore[arg-type]
                self._session.memory = Memory(self.index.embedder)
                if self._resumed is not None:  # a saved chat shown before the model loaded
                    self._session.history = list(self._resumed.history)
                    self._session.memory = self._resumed.restore(
                        self._session.memory, self.chats.store, self.chats.key_id
                    )
                    self._resumed = None
            return self._session

    def resume(self, session_id: str) -> bool:
        """Go on with a saved chat of this character (the page was reloaded): its messages
        shown at once, its history and memory in the session when that is made. False, and
        nothing changed, when it cannot be: no store, gone, another character's, or this tab
        has a chat already."""
        if self.chats is None or self.messages or self._session is not None:
            return False
        try:
            saved = self.chats.load(session_id)
        except RolecastError:
            return False
        if saved.characters != [self.character.id]:
            return False
        self.messages = [
            ChatMessage("assistant" if role == "assistant" else "user", t.speaker, [t.text])
            for t, role in zip(saved.history, saved.roles, strict=True)
        ]
        self.session_id, self._resumed = session_id, saved
        self.saved = self._stored = len(saved.history)
        return True

    def set_dials(self, dials: Mapping[str, int]) -> None:
        """Big Five dials over the package's own, from the next reply on (the conversation
        so far is kept)."""
        character = with_dials(self.base, dials)
        if character.personality == self.character.personality:
            return
        self.character = character
        with self._making:
            if self._session is not None:
                self._session = self._session.recast(character)

    # ------------------------------------------------------------ what the page shows

    group = False

    @property
    def key(self) -> str:
        """The tab's key in the page's state: the character's id."""
        return self.character.id

    @staticmethod
    def avatar_of(character: Character) -> Avatar | None:
        """The character's avatar (``avatar/avatar.toml``), or None: none, or a broken one
        (logged; the portrait shows instead)."""
        from ..avatar import read_avatar

        root = package_root(character)
        if root is None:
            return None
        try:
            return read_avatar(root)
        except InputError as exc:
            log.warning("%s: the avatar is not shown: %s", character.id, exc)
            return None

    @staticmethod
    def portrait_of(character: Character) -> str | None:
        """The picture of the character: its sprite avatar's idle frame when it has one,
        else its portrait."""
        from ..avatar import SpriteAvatar

        avatar = ChatTab.avatar_of(character)
        if isinstance(avatar, SpriteAvatar):
            return str(avatar.path(avatar.idle))
        path = package_image(package_root(character), character.portrait)
        return str(path) if path is not None else None

    def portrait(self) -> str | None:
        return self.portrait_of(self.character)

    def avatar(self) -> Avatar | None:
        return self.avatar_of(self.character)

    def face(self, speaker: str) -> str | None:
        """The picture beside a reply's bubble: the character's (an avatar's still, or its
        portrait); None for anyone else."""
        return self.portrait() if self.character.is_self(speaker) else None

    def greeting(self) -> str:
        return self.character.greetings[0] if self.character.greetings else ""

    def shown_image(self) -> tuple[str | None, str]:
        """The picture beside the chat and its caption: the last reply's frame, or the
        portrait; with an avatar on the stage, only a frame (no portrait twice)."""
        for m in reversed(self.messages):
            if m.role == "assistant" and m.image:
                return m.image, f"{m.image_score:.2f}: {Path(m.image).stem}"
            if m.role == "assistant":
                break
        if self.avatar() is not None:
            return None, ""
        portrait = self.portrait()
        return portrait, self.character.name if portrait else ""

    def last_audio(self) -> str | None:
        """The WAV of the last reply as shown, where it was spoken."""
        last = self.messages[-1] if self.messages else None
        return last.audio_file if last is not None and last.role == "assistant" else None

    # ------------------------------------------------------------ actions

    @staticmethod
    def check_text(text: str) -> str:
        if not text or not text.strip():
            raise InputError("empty message: type something to say")
        if len(text) > MAX_CHARS:
            raise InputError(
                f"message too long: {len(text)} characters, at most {MAX_CHARS}; "
                "shorten it or split it in two"
            )
        return text.strip()

    def check(self, text: str) -> str:
        text = self.check_text(text)
        if self.streaming:
            raise InputError("a reply is still coming: wait for it or press Stop")
        return text

    def send(self, text: str, as_role: str | None = None) -> Iterator[ChatMessage]:
        """Add the line and stream the reply into a new message, yielding it as it grows."""
        text = self.check(text)
        speaker = as_role or self.character.user_role
        self.messages.append(ChatMessage("user", speaker, [text]))
        reply = ChatMessage("assistant", self.character.name, [""])
        self.messages.append(reply)
        try:
            yield from self._stream(reply, text, as_role)
        except BaseException:
            if not reply.text:  # nothing said: the line goes back to the box, not the chat
                del self.messages[-2:]
            raise

    def stop(self) -> None:
        self._stop.set()

    def regenerate(self) -> Iterator[ChatMessage]:
        """A new reply to the last line; the earlier ones stay as alternatives."""
        if self.streaming:
            raise InputError("a reply is still coming: wait for it or press Stop")
        if len(self.messages) < 2 or self.messages[-1].role != "assistant":
            raise InputError("nothing to regenerate yet")
        line, reply = self.messages[-2], self.messages[-1]
        self._forget_last_turn()
        reply.alternatives.append("")
        reply.choice = len(reply.alternatives) - 1
        as_role = None if line.speaker == self.character.user_role else line.speaker
        try:
            yield from self._stream(reply, line.text, as_role)
        except BaseException:
            if not reply.text:
                reply.alternatives.pop()
                reply.choice = len(reply.alternatives) - 1
                self._restore_last_turn(line, reply)
            raise

    def swipe(self, step: int) -> ChatMessage:
        """Show the previous (-1) or next (+1) alternative of the last reply; history follows."""
        if not self.messages or self.messages[-1].role != "assistant" or self.streaming:
            raise InputError("no reply to swipe")
        reply = self.messages[-1]
        reply.choice = max(0, min(len(reply.alternatives) - 1, reply.choice + step))
        h = self.session.history
        if h and h[-1].speaker == self.character.name and h[-1].text != reply.text:
            h[-1] = Turn(self.character.name, reply.text)
            self._changed(len(h) - 1)
            self.save()
        return reply

    def edit_last(self, text: str) -> Iterator[ChatMessage]:
        """Replace the last line with ``text`` and answer it anew."""
        if self.streaming:
            raise InputError("a reply is still coming: wait for it or press Stop")
        if len(self.messages) < 2 or self.messages[-2].role != "user":
            raise InputError("no message of yours to edit yet")
        text = self.check(text)
        line, reply = self.messages[-2], self.messages[-1]
        self._forget_last_turn()
        del self.messages[-2:]
        as_role = None if line.speaker == self.character.user_role else line.speaker
        kept = len(self.messages)
        try:
            yield from self.send(text, as_role)
        except BaseException:
            if len(self.messages) == kept:  # nothing was said: the old turn comes back
                self.messages += [line, reply]
                self._restore_last_turn(line, reply)
            raise

    def speak_last(self, speaker: Any, folder: Path) -> ChatMessage | None:
        """Speak the last reply's shown alternative with ``speaker`` (a
        :class:`~rolecast.voice.speaker.Speaker`) into a WAV in ``folder``; the reply back,
        or None when there was nothing to do. A reply with no spoken words (all narration)
        gets a notice instead of audio."""
        from ..voice.wav import write_wav
        from .stage import timeline_path

        reply = self.messages[-1] if self.messages else None
        if reply is None or reply.role != "assistant" or not reply.text or reply.audio_file:
            return None
        try:
            speech = speaker.speak(reply.text)
        except InputError as exc:
            reply.notice = f"not spoken: {exc}"
            return reply
        self._spoken += 1
        name = f"{self.character.id}-{secrets.token_hex(8)}-{self._spoken}.wav"  # unguessable
        wav = Path(folder) / name
        # the timeline first: a WAV the page can play always has its mouth beside it
        write_timeline(timeline_path(wav), speech, reply.text)
        reply.audio[reply.choice] = str(write_wav(wav, speech.audio))
        self.last_timing["speech_s"] = speech.total_s
        return reply

    def new_chat(self) -> None:
        """A new conversation (the one before stays saved)."""
        if self.streaming:
            self.stop()
        # a reply still being kept finishes first; one that has not begun (a model loading)
        # is not waited for
        if not self._turn.acquire(timeout=NEW_CHAT_WAIT_S):
            raise InputError("a reply is still on its way: press Stop, then New chat")
        try:
            self.messages.clear()
            self.session_id, self.saved, self._stored, self._resumed = None, 0, 0, None
            if self._session is not None:
                self._session.history.clear()
                self._session.last = None
                self._session.memory = Memory(self.index.embedder)
        finally:
            self._turn.release()

    # ------------------------------------------------------------ saving

    def _changed(self, turn: int) -> None:
        """The history changed from turn ``turn`` on: the store and the memory's index
        hold it as it was only up to there."""
        self.saved = min(self.saved, turn)
        memory = self.session.memory
        if memory is not None:
            memory.truncate(turn)

    def save(self) -> None:
        """Keep the conversation as it now is in the store: what changed since it was last
        saved replaces what the store had. A store that cannot take it (locked, full)
        leaves ``save_problem`` to show; the next save tries again."""
        if self.chats is None or self._session is None:
            return
        history = self._session.history
        try:
            if self.session_id is not None and self._stored:
                stored = self.chats.store.message_count(self.chats.key_id, self.session_id)
                if stored != self._stored:  # written elsewhere (the same chat resumed in two
                    # tabs): this one goes on as a chat of its own, the other's turns kept
                    self.session_id, self.saved = None, 0
            if self.session_id is None:
                self.session_id = self.chats.start([self.character.id], {"from": "web"})
            rows = [
                ("assistant" if self.character.is_self(t.speaker) else "user", t)
                for t in history[self.saved :]
            ]
            self.chats.save_turn(
                self.session_id, [self.character.id], rows, self._session.memory, keep=self.saved
            )
        except RolecastError as exc:
            self.save_problem = f"not saved: {exc}"
            return
        self.saved, self._stored, self.save_problem = len(history), len(history), ""

    def remember(self) -> str:
        """Between turns: fold what left the history window into the memory's summary,
        and save it. Says what it did."""
        if self._session is None:
            return "none"
        done = self._session.remember()
        if done != "none":
            self.save()
        return done

    # ------------------------------------------------------------ exports

    def export_json(self) -> str:
        return json.dumps(
            {
                "character": {"id": self.character.id, "name": self.character.name},
                "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "messages": [asdict(m) | {"text": m.text} for m in self.messages],
            },
            ensure_ascii=False,
            indent=2,
        )

    def export_markdown(self) -> str:
        out = [f"# {self.character.name}\n"]
        for m in self.messages:
            out.append(f"**{m.speaker}**: {m.text}\n")
            if len(m.alternatives) > 1:
                out.append(f"_(reply {m.choice + 1} of {len(m.alternatives)})_\n")
        return "\n".join(out)

    # ------------------------------------------------------------ internals

    def _forget_last_turn(self) -> None:
        h = self.session.history
        if len(h) >= 2 and h[-1].speaker == self.character.name:
            del h[-2:]
            self._changed(len(h))

    def _restore_last_turn(self, line: ChatMessage, reply: ChatMessage) -> None:
        if reply.text:
            self.session.history += [Turn(line.speaker, line.text), Turn(reply.speaker, reply.text)]
            self.save()

    def _keep_partial(self, reply: ChatMessage) -> None:
        pending = self.session.pending
        if pending is not None and reply.text:
            reply.stopped = True
            self.session.record(pending, reply.text)

    @staticmethod
    def canon_of(report: Any, history: list[Turn]) -> list[dict[str, Any]]:
        """The canon panel's rows for a reply: the scenes retrieved (sent or not, each with its
        line closest to the user's), the lore entries the turn triggered, then the earlier
        turns of the conversation the memory brought back."""
        sent = set(report.assembly.scene_ids)
        rows = [
            {
                "kind": "canon",
                "scene": h.scene.id,
                "title": h.scene.title,
                "score": round(h.score, 4),
                "dense": round(h.dense, 3),
                "bm25": round(h.lexical, 2),
                "sent": h.scene.id in sent,
                "best_line": h.best_line,
            }
            for h in report.hits
        ]
        rows += [
            {
                "kind": "lore",
                "scene": scene.id,
                "title": scene.title or "lore",
                "text": " ".join(ln.text for ln in scene.lines),
                "score": None,
                "dense": None,
                "bm25": None,
                "sent": scene.id in sent,
            }
            for scene in report.lore
        ]
        return rows + [
            {
                "kind": "memory",
                "scene": f"memory {i + 1}",
                "title": f"from memory: {history[i].speaker}: {history[i].text}",
                "text": f"{history[i].speaker}: {history[i].text}",
                "score": None,
                "dense": None,
                "bm25": None,
                "sent": True,
            }
            for i in report.assembly.memory_ids
            if i < len(history)
        ]

    def _stream(self, reply: ChatMessage, text: str, as_role: str | None) -> Iterator[ChatMessage]:
        """One turn, from the line sent to the reply kept: held under the tab's turn lock
        until it is complete, so a New chat clicked as it ends waits for it instead of
        clearing the conversation under it."""
        with self._turn:
            yield from self._turn_stream(reply, text, as_role)

    def _turn_stream(
        self, reply: ChatMessage, text: str, as_role: str | None
    ) -> Iterator[ChatMessage]:
        self._stop.clear()
        self.streaming = True
        pieces: list[str] = []
        stream = self.session.say(text, as_role)
        start = time.perf_counter()
        try:
            for piece in stream:
                pieces.append(piece)
                reply.alternatives[reply.choice] = "".join(pieces)
                yield reply
                if self._stop.is_set():
                    break
        except GeneratorExit:  # the page went away mid-reply: keep what was said
            self._keep_partial(reply)
            self.save()
            raise
        finally:
            stream.close()
            self.streaming = False
        generated = time.perf_counter() - start
        if self.session.pending is not None:  # stopped: keep what was said
            if not reply.text:
                raise InputError("stopped before the character said anything")
            self._keep_partial(reply)
        report = self.session.last
        assert report is not None
        reply.alternatives[reply.choice] = report.reply
        t0 = time.perf_counter()
        reply.canon = self.canon_of(report, self.session.history)
        reply.parts = dict(report.assembly.parts)
        match = self.images.match(report.reply)
        root = package_root(self.character)
        reply.image, reply.image_score, reply.notice = None, None, ""
        if match is not None:
            path = package_image(root, match.image)
            if path is not None:
                reply.image, reply.image_score = str(path), match.score
            else:
                reply.notice = f"the scene image {match.image} is missing from the package"
        self.save()
        if self.save_problem:
            reply.notice = "; ".join(n for n in (reply.notice, self.save_problem) if n)
        self.last_timing = {"generate_s": generated, "after_s": time.perf_counter() - t0}
        yield reply


def write_timeline(path: Path, speech: Any, said: str) -> Path:
    """The mouth's timeline of a spoken reply (``voice.mouth``, vowels for Japanese pieces)
    with the face its words call for (``avatar.expression``), as JSON, atomically."""
    from ..avatar.expression import expression
    from ..files import write_atomic
    from ..voice.mouth import speech_timeline

    pieces = [(c.text, c.audio, c.gap_s) for c in speech.chunks]
    data = speech_timeline(speech.audio, pieces).to_dict()
    data["expression"] = expression(said)
    return write_atomic(path, json.dumps(data, ensure_ascii=False).encode("utf-8"))
