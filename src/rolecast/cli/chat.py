"""`rolecast prompt` and `rolecast chat`: one turn shown as its prompt, or a conversation."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from typing import TYPE_CHECKING, Any

from ..errors import NoReplyError, RolecastError
from .common import character_arg, character_from, open_session, turn_opts

if TYPE_CHECKING:
    from ..character.model import Character
    from ..session import Session
    from .voice import ChatVoice

log = logging.getLogger(__name__)


def add_prompt(sub: Any) -> None:
    sp = sub.add_parser("prompt", help="print the prompt assembled for a line, with token counts")
    sp.add_argument("name")
    sp.add_argument("text")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.add_argument(
        "--resume",
        metavar="ID",
        help="the prompt as it would be in saved chat ID: its history and memory",
    )
    turn_opts(sp)
    sp.set_defaults(func=cmd_prompt)


def add_chat(sub: Any) -> None:
    from .voice import add_chat_voice

    sp = sub.add_parser(
        "chat", help="chat with a character, or with several in one scene (NAME NAME ...)"
    )
    character_arg(sp)
    sp.add_argument(
        "others",
        nargs="*",
        metavar="NAME",
        help="more characters: a group scene, each with its own persona and canon",
    )
    sp.add_argument(
        "--turns",
        choices=("natural", "round", "all"),
        default="natural",
        help="group scene: who answers a line that names nobody: natural (the character "
        "whose canon it is closest to, others chiming in by --chime), round (in turn) or all "
        "(default natural); a line that names characters is theirs, /next NAME forces one",
    )
    sp.add_argument(
        "--who",
        choices=("auto", "ask", "rule"),
        default="auto",
        help="group scene, natural turns: ask the backend who speaks next (ask), or take the "
        "character whose canon the line is closest to (rule); auto asks any backend but the "
        "small local model (default auto)",
    )
    sp.add_argument(
        "--chime",
        type=float,
        default=0.3,
        help="group scene, natural turns: the chance each other character chimes in (0.3)",
    )
    sp.add_argument("--once", metavar="TEXT", help="say one line, print the reply and exit")
    saved = sp.add_argument_group(
        "saved chats (in the server's store: $ROLECAST_DATABASE_URL, "
        "else $ROLECAST_HOME/server.sqlite3)"
    )
    saved.add_argument(
        "--resume", metavar="ID", help="go on with a saved chat (`rolecast chats` lists them)"
    )
    saved.add_argument(
        "--export",
        metavar="ID",
        help="write a saved chat out (Markdown, or JSON with --format json) and exit",
    )
    saved.add_argument(
        "--format", choices=("md", "json"), default="md", help="--export: md (default) or json"
    )
    saved.add_argument(
        "-o", "--output", metavar="FILE", help="--export: write to FILE instead of printing"
    )
    saved.add_argument("--no-save", action="store_true", help="do not save this chat")
    saved.add_argument(
        "--no-memory",
        action="store_true",
        help="no memory beyond the history window (no summary, no recall of older turns)",
    )
    turn_opts(sp)
    sp.set_defaults(name=None)  # with --resume the saved chat names its characters
    add_chat_voice(sp)
    sp.set_defaults(func=cmd_chat)


def cmd_prompt(args: argparse.Namespace) -> int:
    session = open_session(args, replies=False)  # counts tokens; loads no model weights
    if args.resume:
        from ..chats import Chats, default_store
        from ..memory import Memory

        store = default_store()
        try:
            saved = Chats(store).load(args.resume)
            if session.character.id not in saved.characters:
                raise RolecastError(
                    f"chat {args.resume} is with {' + '.join(saved.characters)}, "
                    f"not {session.character.id}"
                )
            session.history = saved.history
            embedder = session.index.embedder if session.index is not None else None
            session.memory = saved.restore(Memory(embedder), store, "local")
        finally:
            store.close()
    report = session.prepare(args.text, args.as_role)
    a = report.assembly
    if args.json:
        print(
            json.dumps(
                {
                    "messages": a.messages,
                    "parts": a.parts,
                    "scenes": a.scene_ids,
                    "memory": [
                        {
                            "index": i,
                            "speaker": session.history[i].speaker,
                            "text": session.history[i].text,
                        }
                        for i in a.memory_ids
                    ],
                    "hits": [
                        {"id": h.scene.id, "score": h.score, "dense": h.dense, "lexical": h.lexical}
                        for h in report.hits
                    ],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    for m in a.messages:
        print(f"----- {m['role']} -----\n{m['content']}\n")
    print("----- tokens -----")
    print("  ".join(f"{k}={v}" for k, v in a.parts.items()))
    print("----- retrieved scenes (id, fused score, dense cosine, BM25) -----")
    used = set(a.scene_ids)
    for h in report.hits:
        mark = "*" if h.scene.id in used else " "
        print(
            f"{mark} {h.scene.id}\t{h.score:.4f}\t{h.dense:.3f}\t{h.lexical:.2f}\t{h.scene.title}"
        )
    print("(* = in the prompt)")
    if session.memory is not None:
        mem = session.memory
        print(f"----- from memory ({a.parts.get('memory', 0)} tokens) -----")
        print(f"summary of the first {mem.folded} turns, {len(mem.pins)} pinned facts")
        for i in a.memory_ids:
            t = session.history[i]
            print(f"* turn {i + 1}\t{t.speaker}: {t.text}")
    return 0


def _print_reply(session: Session, text: str, as_role: str | None) -> None:
    """Stream a reply as "NAME: ..."; the name is printed with the first piece, so a reply
    that fails before it leaves no dangling "NAME: " line."""
    stream = session.say(text, as_role)
    started = False

    def start() -> None:
        nonlocal started
        if not started:
            print(f"{session.character.name}: ", end="", flush=True)
            started = True

    try:
        for piece in stream:
            start()
            print(piece, end="", flush=True)
    except KeyboardInterrupt:  # Ctrl-C stops the reply; the turn is not recorded
        stream.close()
        print("\n[stopped]" if started else "[stopped]", flush=True)
        return
    except RolecastError:
        if started:
            print(flush=True)  # end the half-printed line before the error message
        raise
    start()  # an empty reply is still a reply
    print(flush=True)


def add_chats(sub: Any) -> None:
    sp = sub.add_parser("chats", help="list the saved chats, the latest first")
    sp.add_argument("--limit", type=int, default=30, help="how many (default 30)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_chats)


def cmd_chats(args: argparse.Namespace) -> int:
    import time

    from ..chats import Chats, default_store

    store = default_store()
    try:
        listed = Chats(store).list(max(args.limit, 1))
    finally:
        store.close()
    if args.json:
        print(json.dumps([c.__dict__ for c in listed], ensure_ascii=False, indent=2))
        return 0
    if not listed:
        print("no saved chats yet: `rolecast chat` saves each one")
        return 0
    for c in listed:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated))
        last = " ".join(c.last.split())
        last = last if len(last) <= 40 else last[:39] + "…"
        print(f"{c.session_id}  {when}  {c.character:<24} {c.messages:>4} msgs  {last}")
    print("(rolecast chat --resume ID goes on with one; --export ID writes it out)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..chats import Chats, default_store, write_export

    store = default_store()
    try:
        text = Chats(store).export(args.export, args.format)
    finally:
        store.close()
    if args.output:
        write_export(text, Path(args.output))
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


class _Saving:
    """Where a chat is saved, and how it was set up: the store, the chat's id (made with
    its first turn, so a chat left without a word is not listed) and its recorder."""

    def __init__(self, args: argparse.Namespace, characters: list[str], saved: Any) -> None:
        from ..chats import Chats, Recorder

        self.store = None if args.no_save else _open_store()
        self.saved = saved
        self.settings = {
            "traits": list(getattr(args, "trait", None) or []),
            "as": args.as_role,
            "turns": args.turns,
            "chime": args.chime,
        }
        self.recorder: Recorder | None = None
        if self.store is not None:
            self.chats = Chats(self.store)
            sid = saved.session_id if saved is not None else None
            self.recorder = Recorder(self.chats, sid or "", characters)

    def turn(self, rows: list[tuple[str, Any]], memory: Any) -> None:
        if self.recorder is None:
            return
        if not self.recorder.session_id:
            self.recorder.session_id = self.chats.start(self.recorder.characters, self.settings)
        problem = self.recorder.turn(rows, memory)
        if problem:
            print(f"rolecast: not saved: {problem}", file=sys.stderr)

    def memory(self, memory: Any) -> None:
        if self.recorder is not None and self.recorder.session_id:
            problem = self.recorder.flush(memory)
            if problem:
                print(f"rolecast: memory not saved: {problem}", file=sys.stderr)

    def close(self, memory: Any) -> None:
        if self.recorder is not None and self.recorder.session_id:
            sid = self.recorder.session_id
            left = self.recorder.close(memory)
            if left is not None:
                print(
                    f"rolecast: the store could not take the last turns: they are in {left}",
                    file=sys.stderr,
                )
            else:
                print(f"(saved as {sid}: `rolecast chat --resume {sid}` goes on)", file=sys.stderr)
        if self.store is not None:
            self.store.close()


def _open_store() -> Any:
    from ..chats import default_store

    return default_store()


def _resumed(args: argparse.Namespace) -> Any:
    """The saved chat --resume names, with its characters and settings taken into ``args``
    (what the command line sets wins)."""
    from ..chats import Chats

    if args.no_save:
        raise RolecastError("--resume goes on with a saved chat: leave out --no-save")
    store = _open_store()
    try:
        saved = Chats(store).load(args.resume)
    finally:
        store.close()
    given = [args.name, *args.others] if args.name else []
    if given and given != saved.characters:
        raise RolecastError(
            f"chat {args.resume} is with {' + '.join(saved.characters)}, not "
            f"{' + '.join(given)}: leave the names out to resume it"
        )
    args.name, args.others = saved.characters[0], saved.characters[1:]
    st = saved.settings
    if not getattr(args, "trait", None) and st.get("traits"):
        args.trait = list(st["traits"])
    if args.as_role is None and st.get("as"):
        args.as_role = st["as"]
    if st.get("turns") in ("natural", "round", "all"):
        args.turns = st["turns"]
    if isinstance(st.get("chime"), (int, float)):
        args.chime = float(st["chime"])
    return saved


def _show_resumed(saved: Any, last: int = 6) -> None:
    if saved is None:
        return
    turns = saved.history[-last:]
    if len(saved.history) > last:
        print(f"(… {len(saved.history) - last} earlier messages)")
    for t in turns:
        print(f"{t.speaker}: {t.text}")


def cmd_chat(args: argparse.Namespace) -> int:
    from ..character.store import DEFAULT_CHARACTER

    if args.export:
        return _export(args)
    saved = _resumed(args) if args.resume else None
    args.name = args.name or DEFAULT_CHARACTER
    if args.others:
        return _group_chat(args, saved)
    character = character_from(args)
    saving = _Saving(args, [character.id], saved)
    if args.once is not None:
        session = open_session(args, character)
        _attach_memory(args, session, saved, saving)
        session.warm()  # the persona's saved state, when an earlier chat left one
        voice = _voice(args, session)
        try:
            before = session.last
            _turn(session, voice, args.once, args.as_role or character.user_role, strict=True)
            if session.last is not before:
                saving.turn(_last_rows(session), session.memory)
        finally:
            if voice is not None:
                voice.close()
            saving.close(session.memory)
        return 0
    # the greeting at once; the model loads, and reads the persona, while the user types
    role = args.as_role or character.user_role
    if saved is not None:
        _show_resumed(saved)
    elif character.greetings:
        print(f"{character.name}: {character.greetings[0]}")
    print(f"(you are {role}; /help lists the commands, /quit leaves)", flush=True)
    ready = _ChatReady(args, character, saved, saving)
    try:
        return _chat(ready, role, saving)
    finally:
        ready.close()
        saving.close(ready.session.memory if ready.session is not None else None)


def _last_rows(session: Session) -> list[tuple[str, Any]]:
    """The turn just recorded, as store rows: the line, then the reply."""
    return [("user", session.history[-2]), ("assistant", session.history[-1])]


def _attach_memory(args: argparse.Namespace, session: Session, saved: Any, saving: _Saving) -> None:
    """The session's memory (unless --no-memory) and, resuming, its history and memory."""
    from ..memory import Memory

    if saved is not None:
        session.history = list(saved.history)
    if args.no_memory:
        return
    embedder = session.index.embedder if session.index is not None else None
    session.memory = Memory(embedder)
    if saved is not None and saving.store is not None:
        saved.restore(session.memory, saving.store, saving.chats.key_id)


def _voice(args: argparse.Namespace, session: Session) -> ChatVoice | None:
    if not args.speak:
        return None
    from .voice import ChatVoice

    return ChatVoice(args, session)


def _turn(
    session: Session, voice: ChatVoice | None, text: str, role: str, strict: bool = False
) -> None:
    before = session.last
    _print_reply(session, text, role)
    if voice is not None and session.last is not before:  # a complete reply
        assert session.last is not None
        voice.say(session.last.reply, strict=strict)


class _ChatReady:
    """The chat's session and voice, made in a thread from the start: the model loads and
    evaluates (or loads saved) the persona while the greeting is read and a line typed. The
    first line waits for it; an error in it is raised there."""

    def __init__(
        self, args: argparse.Namespace, character: Character, saved: Any, saving: _Saving
    ) -> None:
        import threading

        self.character = character
        self.saved, self.saving = saved, saving
        self.session: Session | None = None
        self.voice: ChatVoice | None = None
        self.error: BaseException | None = None
        self.loaded = threading.Event()
        self.background: threading.Thread | None = None
        self.thread = threading.Thread(target=self._make, args=(args, character), daemon=True)
        self.thread.start()

    def _make(self, args: argparse.Namespace, character: Character) -> None:
        from ..backends.base import shared

        try:
            session = open_session(args, character)
            session.llm = shared(session.llm)  # the first reply waits for warm() to finish
            _attach_memory(args, session, self.saved, self.saving)
            self.session = session
            self.voice = _voice(args, session)
        except BaseException as exc:  # raised where the chat asks for the session
            self.error = exc
            return
        finally:
            self.loaded.set()
        if self.voice is not None:
            self.voice.warm_up()
        try:
            session.warm()
        except Exception as exc:  # the chat works without it, only slower
            log.warning("could not get the model ready ahead of the first line: %s", exc)

    def get(self) -> tuple[Session, ChatVoice | None]:
        if not self.loaded.is_set():
            print("(the model is still loading…)", file=sys.stderr, flush=True)
            self.loaded.wait()
        if self.error is not None:
            raise self.error
        assert self.session is not None  # made, as no error was raised making it
        return self.session, self.voice

    def settle(self) -> None:
        """Wait for the work between turns (memory, prefill) to end."""
        if self.background is not None:
            self.background.join()
            self.background = None

    def prefill(self) -> None:
        """After a reply, while the user reads and types: turns that left the history
        window folded into the memory's summary (saved), then the next prompt's start
        evaluated. The next line waits for it, as for the loading."""
        import threading

        session = self.session
        assert session is not None

        def run() -> None:
            try:
                if session.remember() != "none":
                    self.saving.memory(session.memory)
            except Exception as exc:  # the chat goes on; the summary is tried again later
                log.warning("could not update the conversation's summary: %s", exc)
            try:
                session.prefill()
            except Exception as exc:  # the chat works without it, only slower
                log.warning("could not get the model ready for the next line: %s", exc)

        self.background = threading.Thread(target=run, daemon=True)
        self.background.start()

    def close(self) -> None:
        # the model is in use until these end: freed under them, llama.cpp would crash
        for thread in (self.thread, self.background):
            if thread is not None:
                thread.join()
        if self.loaded.is_set() and self.voice is not None:
            self.voice.close()


CHAT_COMMAND = re.compile(r"\s*(?P<word>/[^\s/]\S*)(?P<rest>.*)$", re.DOTALL)

MEMORY_HELP = """  /remember FACT  keep FACT in mind for the rest of the chat
  /memories       what the chat remembers: the summary, the pinned facts
  /forget N       forget pinned fact N (/forget summary: the summary)"""

CHAT_HELP = (
    """commands:
  /as NAME      speak as NAME (a narrator such as {narrator} narrates); /as alone: back to {user}
"""
    + MEMORY_HELP
    + """
  /help         this list
  /quit, /exit  leave (Ctrl-D too)
  //TEXT        say TEXT that begins with a slash
Ctrl-C while a reply streams stops it."""
)


def _memory_command(word: str, rest: str, memory: Any, saving: _Saving) -> bool:
    """/remember, /memories, /forget; False when ``word`` is none of them."""
    if word not in ("/remember", "/memories", "/forget"):
        return False
    if memory is None:
        print("this chat has no memory (--no-memory)")
        return True
    try:
        if word == "/remember":
            n = memory.pin(rest)
            print(f"(pinned as {n}: /memories lists it, /forget {n} drops it)")
        elif word == "/forget":
            print(f"(forgotten: {memory.forget(rest)})")
        else:
            print(memory.listing())
            return True
    except RolecastError as exc:
        print(f"rolecast: {exc}", file=sys.stderr)
        return True
    saving.memory(memory)
    return True


def _chat(ready: _ChatReady, role: str, saving: _Saving) -> int:
    c = ready.character
    while True:
        try:
            text = input(f"{role}> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        command = CHAT_COMMAND.match(text)
        if command is None:
            if text.strip():
                session, voice = ready.get()
                ready.settle()
                before = session.last
                try:
                    line = text.strip()[1:] if text.strip().startswith("//") else text
                    _turn(session, voice, line, role)
                except NoReplyError as exc:  # the chat goes on: the next line may do better
                    print(f"rolecast: {exc}", file=sys.stderr)
                else:
                    if session.last is not before:
                        saving.turn(_last_rows(session), session.memory)
                    ready.prefill()
            continue
        word, rest = command["word"].lower(), command["rest"].strip()
        if word in ("/quit", "/exit"):
            return 0
        if word in ("/remember", "/memories", "/forget"):
            session, _ = ready.get()
            ready.settle()
            _memory_command(word, rest, session.memory, saving)
        elif word == "/as":
            role = rest or c.user_role
        elif word == "/help":
            narrator = c.narrators[0] if c.narrators else "旁白"
            print(CHAT_HELP.format(user=c.user_role, narrator=narrator))
        else:  # not sent to the model: a typo of a command is not a line of dialogue
            print(f"unknown command {word}; /help lists them")


# ---- a scene with several characters -------------------------------------------------------

GROUP_HELP = (
    """commands:
  /next NAME [TEXT]  NAME answers (TEXT, or the last line)
  /narrate TEXT      set the scene as the narrator
"""
    + MEMORY_HELP
    + """
  /help              this list
  /quit, /exit       leave (Ctrl-D too)"""
)


def _group_chat(args: argparse.Namespace, saved: Any = None) -> int:
    """``rolecast chat A B C``: one backend for all, a Session per character."""
    from ..backends.base import shared
    from ..character.personality import parse_traits, with_dials
    from ..group.scene import GroupScene
    from ..retrieval.index import load_index
    from ..session import Session
    from .common import backend_from, embedder_from, load_character, progress

    dials = parse_traits(getattr(args, "trait", None) or [])
    characters = [with_dials(load_character(n), dials) for n in [args.name, *args.others]]
    if not 0 <= args.chime <= 1:
        raise RolecastError(f"--chime is a chance from 0 to 1, not {args.chime}")
    embedder = embedder_from(args)
    indexes = [load_index(c, embedder) for c in characters]
    llm = shared(backend_from(args).open(progress=progress("preparing the model")))
    try:
        order = args.order or llm.prompt_order
        sessions = [
            Session(c, i, llm, order=order) for c, i in zip(characters, indexes, strict=True)
        ]
        scene = GroupScene.of(
            sessions, args.turns, args.chime, user_role=args.as_role, who=args.who
        )
        saving = _Saving(args, [c.id for c in characters], saved)
        _attach_memory(args, sessions[0], saved, saving)
        if sessions[0].memory is not None:
            scene.remember_with(sessions[0].memory)
        if saved is not None:
            scene.resume(saved.history)
            _show_resumed(saved)
        names = {c.id: c.name for c in characters}
        try:
            return _group_loop(args, scene, names, saving)
        finally:
            saving.close(scene.memory)
    finally:
        llm.close()


def _group_loop(
    args: argparse.Namespace, scene: Any, names: dict[str, str], saving: _Saving
) -> int:
    def turn(text: str) -> None:
        before = len(scene.history)
        try:
            _group_turn(scene, names, text)
        finally:  # what was said before a failure is the scene's: saved
            new = scene.history[before:]
            if new:
                selves = {n for m in scene.members for n in m.names}
                rows = [("assistant" if t.speaker in selves else "user", t) for t in new]
                saving.turn(rows, scene.memory)
        try:
            if scene.remember() != "none":
                saving.memory(scene.memory)
        except Exception as exc:  # the scene goes on; the summary is tried again later
            log.warning("could not update the scene's summary: %s", exc)

    if args.once is not None:
        turn(args.once)
        return 0
    print(
        f"(a scene with {', '.join(names.values())}; you are {scene.user_role}; "
        "/help lists the commands)",
        flush=True,
    )
    while True:
        try:
            text = input(f"{scene.user_role}> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        word, _, rest = text.strip().partition(" ")
        word = word.lower()
        if word in ("/quit", "/exit"):
            return 0
        if word == "/help":
            print(GROUP_HELP)
            continue
        if _memory_command(word, rest.strip(), scene.memory, saving):
            continue
        if not text.strip():
            continue
        try:
            turn(text)
        except (NoReplyError, RolecastError) as exc:  # the scene goes on
            print(f"rolecast: {exc}", file=sys.stderr)


def _group_turn(scene: Any, names: dict[str, str], text: str) -> None:
    """Stream the replies a line gets, each under its speaker's name."""
    current = None
    for who, piece in scene.say(text):
        if who != current:
            if current is not None:
                print(flush=True)
            print(f"{names[who]}: ", end="", flush=True)
            current = who
        print(piece, end="", flush=True)
    if current is not None:
        print(flush=True)
