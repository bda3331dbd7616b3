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
        "--chime",
        type=float,
        default=0.3,
        help="group scene, natural turns: the chance each other character chimes in (0.3)",
    )
    sp.add_argument("--once", metavar="TEXT", help="say one line, print the reply and exit")
    turn_opts(sp)
    add_chat_voice(sp)
    sp.set_defaults(func=cmd_chat)


def cmd_prompt(args: argparse.Namespace) -> int:
    session = open_session(args, replies=False)  # counts tokens; loads no model weights
    report = session.prepare(args.text, args.as_role)
    a = report.assembly
    if args.json:
        print(
            json.dumps(
                {
                    "messages": a.messages,
                    "parts": a.parts,
                    "scenes": a.scene_ids,
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


def cmd_chat(args: argparse.Namespace) -> int:
    if getattr(args, "others", None):
        return _group_chat(args)
    character = character_from(args)
    if args.once is not None:
        session = open_session(args, character)
        session.warm()  # the persona's saved state, when an earlier chat left one
        voice = _voice(args, session)
        try:
            _turn(session, voice, args.once, args.as_role or character.user_role, strict=True)
        finally:
            if voice is not None:
                voice.close()
        return 0
    # the greeting at once; the model loads, and reads the persona, while the user types
    role = args.as_role or character.user_role
    if character.greetings:
        print(f"{character.name}: {character.greetings[0]}")
    print(f"(you are {role}; /help lists the commands, /quit leaves)", flush=True)
    ready = _ChatReady(args, character)
    try:
        return _chat(ready, role)
    finally:
        ready.close()


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

    def __init__(self, args: argparse.Namespace, character: Character) -> None:
        import threading

        self.character = character
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

    def prefill(self) -> None:
        """After a reply: the next prompt's start evaluated while the user reads and types
        (the next line waits for it, as for the loading)."""
        import threading

        def run() -> None:
            try:
                self.session.prefill()  # type: ignore[union-attr]
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

CHAT_HELP = """commands:
  /as NAME      speak as NAME (a narrator such as {narrator} narrates); /as alone: back to {user}
  /help         this list
  /quit, /exit  leave (Ctrl-D too)
  //TEXT        say TEXT that begins with a slash
Ctrl-C while a reply streams stops it."""


def _chat(ready: _ChatReady, role: str) -> int:
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
                try:
                    line = text.strip()[1:] if text.strip().startswith("//") else text
                    _turn(session, voice, line, role)
                except NoReplyError as exc:  # the chat goes on: the next line may do better
                    print(f"rolecast: {exc}", file=sys.stderr)
                else:
                    ready.prefill()
            continue
        word, rest = command["word"].lower(), command["rest"].strip()
        if word in ("/quit", "/exit"):
            return 0
        if word == "/as":
            role = rest or c.user_role
        elif word == "/help":
            narrator = c.narrators[0] if c.narrators else "旁白"
            print(CHAT_HELP.format(user=c.user_role, narrator=narrator))
        else:  # not sent to the model: a typo of a command is not a line of dialogue
            print(f"unknown command {word}; /help lists them")


# ---- a scene with several characters -------------------------------------------------------

GROUP_HELP = """commands:
  /next NAME [TEXT]  NAME answers (TEXT, or the last line)
  /narrate TEXT      set the scene as the narrator
  /help              this list
  /quit, /exit       leave (Ctrl-D too)"""


def _group_chat(args: argparse.Namespace) -> int:
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
        scene = GroupScene.of(sessions, args.turns, args.chime, user_role=args.as_role)
        names = {c.id: c.name for c in characters}
        if args.once is not None:
            _group_turn(scene, names, args.once)
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
            word = text.strip().split(" ", 1)[0].lower()
            if word in ("/quit", "/exit"):
                return 0
            if word == "/help":
                print(GROUP_HELP)
                continue
            if not text.strip():
                continue
            try:
                _group_turn(scene, names, text)
            except (NoReplyError, RolecastError) as exc:  # the scene goes on
                print(f"rolecast: {exc}", file=sys.stderr)
    finally:
        llm.close()


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
