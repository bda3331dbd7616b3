"""Entry point: ``rolecast <command>``. Each command parses, calls, prints."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .. import __version__, config
from ..errors import NoReplyError, RolecastError

log = logging.getLogger(__name__)
DEFAULT_BACKEND = config.SETTINGS["backend"][1] or "local"
EXPORT_FORMATS = ("card-png", "card-json", "charx", "chatharuhi-jsonl")  # formats.detect has them


def _load(name: str | None):
    from ..character import store

    return store.load(name or store.DEFAULT_CHARACTER)


def _session(args: argparse.Namespace, character=None):  # type: ignore[no-untyped-def]
    from ..backends.base import get_llm
    from ..retrieval.index import load_index
    from ..session import Session

    character = character or _load(args.name)
    index = load_index(character, args.embedder or config.resolve("embedder") or "use")
    file = config.read_file()
    backend = config.resolve("backend", args.backend, file=file) or DEFAULT_BACKEND
    options = {
        "model": config.resolve("model", args.model, file=file),
        "base_url": args.base_url,
        "api_key": args.api_key,
        "progress": _progress("preparing the model"),
    }
    llm = get_llm(backend, **options)
    return Session(character, index, llm, order=args.order or llm.prompt_order)


def _progress(label: str, unit: str = "MB"):
    """A progress printer for long steps (stderr, one updating line); ``unit`` "MB" shows
    bytes as megabytes, any other unit shows counts."""
    shown = {"pct": -1}
    step = 1 if sys.stderr.isatty() else 25  # a log gets a line every quarter, not every percent

    def show(done: int, total: int) -> None:
        pct = int(100 * done / total) if total else 100
        if pct != shown["pct"] and (pct % step == 0 or done >= total):
            shown["pct"] = pct
            end = "\n" if done >= total or step > 1 else ""
            amount = f"{done >> 20}/{total >> 20} MB" if unit == "MB" else f"{done}/{total} {unit}"
            print(
                f"\r{label}: {pct:3d}% ({amount})",
                end=end,
                file=sys.stderr,
                flush=True,
            )

    return show


def cmd_list(args: argparse.Namespace) -> int:
    from ..character import store

    for found in store.scan():  # a broken package is skipped with a warning, not fatal
        c = found.character
        if c is None:
            print(f"rolecast: warning: skipped {found.id}: {found.problem}", file=sys.stderr)
            continue
        where = "built-in" if found.builtin else "user"
        print(f"{found.id}\t{c.name}\t{len(c.scenes)} scenes\t{c.language}\t{where}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ..character.package import package_root

    c = _load(args.name)
    print(f"id:        {c.id}\nname:      {c.name}")
    print(f"aliases:   {', '.join(c.aliases) or '-'}\nlanguage:  {c.language}")
    print(f"source:    {c.source or '-'}\nuser role: {c.user_role}")
    print(f"narrators: {', '.join(c.narrators)}\nfolder:    {package_root(c)}")
    from ..voice.speaker import voice_for

    v = voice_for(c)
    where = "[voice]" if c.voice is not None else f"default for {c.language}"
    print(f"voice:     {v.backend} {v.voice or '(its default)'}, speed {v.speed:g} ({where})")
    lines = sum(len(s.lines) for s in c.scenes)
    print(f"canon:     {len(c.scenes)} scenes, {lines} lines")
    for g in c.greetings:
        print(f"greeting:  {g}")
    print("\n" + c.persona.strip())
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from ..retrieval.embedders import get_embedder
    from ..retrieval.index import build_index, index_root

    c = _load(args.name)
    embedder = get_embedder(args.embedder or config.resolve("embedder") or "use")
    lines = sum(len(s.lines) for s in c.scenes)
    started = time.perf_counter()
    folder = build_index(c, embedder, index_root())
    took = time.perf_counter() - started
    print(
        f"built {c.id} with {embedder.name}: {len(c.scenes)} scenes, {lines} lines "
        f"in {took:.2f} s ({lines / took if took else 0:.0f} lines/s) -> {folder}"
    )
    return 0


def cmd_prompt(args: argparse.Namespace) -> int:
    session = _session(args)
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


def _print_reply(session, text: str, as_role: str | None) -> None:
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
    character = _load(args.name)
    if args.once is not None:
        session = _session(args, character)
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


def _voice(args: argparse.Namespace, session):  # type: ignore[no-untyped-def]
    if not args.speak:
        return None
    from .voice import ChatVoice

    return ChatVoice(args, session)


def _turn(session, voice, text: str, role: str, strict: bool = False) -> None:  # type: ignore[no-untyped-def]
    before = session.last
    _print_reply(session, text, role)
    if voice is not None and session.last is not before:  # a complete reply
        voice.say(session.last.reply, strict=strict)


class _ChatReady:
    """The chat's session and voice, made in a thread from the start: the model loads and
    evaluates (or loads saved) the persona while the greeting is read and a line typed. The
    first line waits for it; an error in it is raised there."""

    def __init__(self, args: argparse.Namespace, character) -> None:  # type: ignore[no-untyped-def]
        import threading

        self.character = character
        self.session = None
        self.voice = None
        self.error: BaseException | None = None
        self.loaded = threading.Event()
        self.background: threading.Thread | None = None
        self.thread = threading.Thread(target=self._make, args=(args, character), daemon=True)
        self.thread.start()

    def _make(self, args: argparse.Namespace, character) -> None:  # type: ignore[no-untyped-def]
        from ..backends.base import shared

        try:
            session = _session(args, character)
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

    def get(self):  # type: ignore[no-untyped-def]
        if not self.loaded.is_set():
            print("(the model is still loading…)", file=sys.stderr, flush=True)
            self.loaded.wait()
        if self.error is not None:
            raise self.error
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


def _report_problems(problems, label: str, limit: int = 10) -> None:
    for p in problems[:limit]:
        print(f"{label}: {p}", file=sys.stderr)
    if len(problems) > limit:
        print(f"{label}: ... and {len(problems) - limit} more", file=sys.stderr)


def cmd_import(args: argparse.Namespace) -> int:
    from ..character import store
    from ..character.package import save_character
    from ..formats.detect import IMPORT_FORMATS, import_source

    if len(args.source) == 1:
        fmt, path = None, args.source[0]
    elif len(args.source) == 2 and args.source[0] in IMPORT_FORMATS:
        fmt, path = args.source
    else:
        raise RolecastError(
            f"usage: rolecast import [{'|'.join(IMPORT_FORMATS)}] PATH (got {args.source})"
        )
    result = import_source(path, fmt, args.name, speaker=args.speaker, user_role=args.user_role)
    _report_problems(result.problems, "skipped")
    _report_problems(result.repaired, "repaired")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    _report_problems(result.warnings, "warning")  # e.g. card text that looks like an injection
    if args.strict and result.problems:
        raise result.problems[0]
    c = result.character
    dest = store.user_package_path(c.id)
    if dest.exists() and not args.force:
        raise RolecastError(
            f"a character {c.id!r} already exists at {dest}; use --force to replace it "
            "or --name to import it under another id"
        )
    save_character(c, dest, images=result.images)
    print(f"imported {c.name} as {c.id}: {len(c.scenes)} scenes, user role {c.user_role} -> {dest}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import os

    from ..character.package import IMAGES, package_root
    from ..formats.detect import export_bytes

    character = _load(args.name)
    root = package_root(character)
    embed = None
    if args.format == "chatharuhi-jsonl":
        from ..retrieval.embedders import get_embedder

        embedder = get_embedder(args.embedder or config.resolve("embedder") or "use")

        def embed(texts: list[str]):  # type: ignore[no-untyped-def]
            return embedder.embed_documents(texts).tolist()

    data = export_bytes(character, args.format, root / IMAGES if root else None, embed)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {character.name} as {args.format} to {out} ({len(data)} bytes)")
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    from ..web.access import AUTH_ENV, Credentials, check_exposure
    from ..web.app import WebApp
    from ..web.page import launch

    credentials = Credentials.parse(args.auth or [], os.environ.get(AUTH_ENV))
    check_exposure(args.host, args.share, credentials)  # before anything loads
    file = config.read_file()
    app = WebApp(
        args.name,
        backend=config.resolve("backend", args.backend, file=file) or DEFAULT_BACKEND,
        model=config.resolve("model", args.model, file=file),
        embedder=args.embedder or config.resolve("embedder", file=file) or "use",
        llm_options={"base_url": args.base_url, "api_key": args.api_key},
        allowed_models=args.allow_model or [],
    )
    login = "login required" if credentials else "no login: loopback only"
    print(f"rolecast web: http://{args.host}:{args.port} ({login}; Ctrl-C stops)", file=sys.stderr)
    launch(app, args.host, args.port, args.share, credentials)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("rolecast serve", "starlette and uvicorn", "server") from None
    from ..server.keys import check_bind
    from ..server.run import build_state, serve

    file = config.read_file()
    state = build_state(
        api_keys=args.api_key_server or [],
        database_url=args.database_url,
        backend=config.resolve("backend", args.backend, file=file) or DEFAULT_BACKEND,
        model=config.resolve("model", args.model, file=file),
        llm_options={"base_url": args.base_url, "api_key": args.api_key},
        embedder=args.embedder or config.resolve("embedder", file=file) or "use",
        rate=args.rate,
        max_body=args.max_body,
        body_timeout=args.body_timeout,
        send_timeout=args.send_timeout,
        models=config.resolve("server_models", args.models, file=file),
    )
    check_bind(args.host, state.keys)
    where = (
        "sessions in PostgreSQL"
        if type(state.store).__name__.startswith("Postgres")
        else (f"sessions in {getattr(state.store, 'path', '')}")
    )
    keys = "API keys required" if state.keys else "no API keys: loopback only"
    print(f"rolecast serve: http://{args.host}:{args.port}/v1 ({where}; {keys})", file=sys.stderr)
    serve(state, args.host, args.port)
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from ..character import store
    from ..character.package import write_zip

    out = write_zip(store.find_package(args.name), Path(args.output))
    print(f"wrote {out}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from ..character import store
    from ..character.package import extract_zip, load_character, valid_id

    cid = valid_id(args.name or load_character(args.file).id)
    dest = store.user_package_path(cid)
    if dest.exists() and not args.force:
        raise RolecastError(
            f"a character {cid!r} already exists at {dest}; use --force to replace it"
        )
    extract_zip(Path(args.file), dest)
    print(f"installed {cid} -> {dest}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "list":
        file = config.read_file()
        for key, (envs, _default, what) in config.SETTINGS.items():
            value = config.resolve(key, file=file)
            if key == "api_key" and value:
                value = value[:3] + "..." + value[-2:]
            print(f"{key} = {value!r}\t# {what}; env {', '.join(envs)}")
        print(f"# file: {config.config_path()}")
        return 0
    if args.key is None:
        raise RolecastError(f"'rolecast config {args.action}' needs a setting name")
    if args.action == "get":
        print(config.resolve(args.key) or "")
    elif args.action == "set":
        if args.value is None:
            raise RolecastError(f"'rolecast config set {args.key}' needs a value")
        print(f"wrote {args.key} to {config.write_setting(args.key, args.value)}")
    else:
        print(f"removed {args.key} from {config.write_setting(args.key, None)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ..character.store import DEFAULT_CHARACTER

    p = argparse.ArgumentParser(
        prog="rolecast",
        description="Talk with fictional characters who speak the way they do in their canon.",
    )
    p.add_argument("--version", action="version", version=f"rolecast {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="show log messages")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def retrieval_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--embedder",
            help="embedder: use, e5 (default: $ROLECAST_EMBEDDER, the config file, or use)",
        )

    def backend_opts(sp: argparse.ArgumentParser, key_flag: str = "--api-key") -> None:
        retrieval_opts(sp)
        sp.add_argument(
            "--backend",
            help="LLM backend: local, openai, echo (default: $ROLECAST_BACKEND, the config "
            f"file, or {DEFAULT_BACKEND})",
        )
        sp.add_argument(
            "--base-url",
            help="openai backend: endpoint (default: $ROLECAST_BASE_URL, $OPENAI_BASE_URL, "
            "the config file, or api.openai.com)",
        )
        sp.add_argument(
            key_flag,
            dest="api_key",
            help="openai backend: key (default: $ROLECAST_API_KEY, $OPENAI_API_KEY, config file)",
        )
        sp.add_argument(
            "--model",
            help="model for the backend: for local a name (qwen2.5-0.5b, "
            "smollm2-135m), a GGUF path or hf:OWNER/REPO/FILE (default: "
            "$ROLECAST_MODEL or qwen2.5-0.5b)",
        )

    def turn_opts(sp: argparse.ArgumentParser) -> None:
        backend_opts(sp)
        sp.add_argument(
            "--as",
            dest="as_role",
            help="speak as this role (default: the "
            "character's user role); a narrator name such as 旁白 narrates",
        )
        sp.add_argument(
            "--order",
            choices=("classic", "split", "cache"),
            help="prompt order: classic (canon in the system message), split (canon as a "
            "system message right before the line: persona and history stay a reusable KV "
            "cache prefix) or cache (canon inside the user's turn); default: split for the "
            "local backend, classic otherwise",
        )

    sub.add_parser("list", help="list installed characters").set_defaults(func=cmd_list)
    sp = sub.add_parser("show", help="show a character")
    sp.add_argument("name")
    sp.set_defaults(func=cmd_show)
    sp = sub.add_parser("build", help="build (or rebuild) a character's canon index")
    sp.add_argument("name")
    retrieval_opts(sp)
    sp.set_defaults(func=cmd_build)
    sp = sub.add_parser("prompt", help="print the prompt assembled for a line, with token counts")
    sp.add_argument("name")
    sp.add_argument("text")
    sp.add_argument("--json", action="store_true", help="print JSON")
    turn_opts(sp)
    sp.set_defaults(func=cmd_prompt)
    sp = sub.add_parser("chat", help="chat with a character")
    sp.add_argument(
        "name",
        nargs="?",
        default=DEFAULT_CHARACTER,
        help=f"character (default: {DEFAULT_CHARACTER})",
    )
    sp.add_argument("--once", metavar="TEXT", help="say one line, print the reply and exit")
    turn_opts(sp)
    from .voice import add_chat_voice

    add_chat_voice(sp)
    sp.set_defaults(func=cmd_chat)
    sp = sub.add_parser(
        "import",
        help="import a character: a character card (JSON, PNG, CHARX) or a ChatHaruhi role "
        "(story folder, JSONL, role zip, hf://OWNER/DATASET/ROLE)",
    )
    sp.add_argument(
        "source",
        nargs="+",
        metavar="[FORMAT] PATH",
        help="card or chatharuhi (detected from the file when left out), then the path",
    )
    sp.add_argument("--name", help="id for the imported character (default: from the source)")
    sp.add_argument("--force", action="store_true", help="replace an existing character")
    sp.add_argument("--strict", action="store_true", help="fail on any unreadable line")
    sp.add_argument(
        "--speaker",
        metavar="NAME",
        help="ChatHaruhi: the speaker who is the character (default: the one the folder name, "
        "gradio_header.md, the role's config or its persona names, else the one with the most "
        "lines). A card holds one character: a NAME other than its name is an error",
    )
    sp.add_argument(
        "--user-role",
        metavar="NAME",
        help="the role you speak as (default: for ChatHaruhi whoever talks to the character "
        "most, for a card 'user', which {{user}} becomes)",
    )
    sp.set_defaults(func=cmd_import)
    sp = sub.add_parser("export", help="export a character as a card or a ChatHaruhi role")
    sp.add_argument("name")
    sp.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    sp.add_argument("-o", "--output", required=True, help="file to write")
    sp.add_argument("--embedder", help="chatharuhi-jsonl: embedder for the vector column")
    sp.set_defaults(func=cmd_export)
    sp = sub.add_parser("web", help="chat in the browser: canon and scene images beside the reply")
    sp.add_argument(
        "name",
        nargs="?",
        default=DEFAULT_CHARACTER,
        help=f"character shown first (default: {DEFAULT_CHARACTER})",
    )
    sp.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1); any other needs --auth",
    )
    sp.add_argument("--port", type=int, default=7860)
    sp.add_argument("--share", action="store_true", help="a public gradio.live link (needs --auth)")
    sp.add_argument(
        "--auth",
        action="append",
        metavar="USER:PASSWORD",
        help="a login the page asks for (repeatable; also $ROLECAST_WEB_AUTH, comma-separated, "
        "which keeps the password out of the process list). Without one the page listens on "
        "loopback only",
    )
    sp.add_argument(
        "--allow-model",
        action="append",
        metavar="MODEL",
        help="a model the settings panel may load besides the local catalogue's names and the "
        "starting model: a GGUF path, hf:OWNER/REPO/FILE or another backend's model name "
        "(repeatable). Nothing else typed there is loaded or downloaded",
    )
    turn_opts(sp)
    sp.set_defaults(func=cmd_web)
    sp = sub.add_parser(
        "serve", help="characters as OpenAI-compatible models (/v1/chat/completions)"
    )
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument(
        "--api-key",
        dest="api_key_server",
        action="append",
        metavar="KEY",
        help="a key clients must send as 'Authorization: Bearer KEY' (repeatable; also "
        "$ROLECAST_SERVER_KEYS, comma-separated). Without keys the server listens on loopback only",
    )
    sp.add_argument(
        "--database-url",
        help="postgresql://... or sqlite:///PATH (default: $ROLECAST_DATABASE_URL, else "
        "$ROLECAST_HOME/server.sqlite3)",
    )
    sp.add_argument(
        "--rate", type=int, default=120, help="requests per minute per key (0: no limit)"
    )
    sp.add_argument("--max-body", type=int, default=1 << 20, help="largest request body, bytes")
    sp.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="time a client has to send its whole request body, else 408 (default: 30)",
    )
    sp.add_argument(
        "--send-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time in all a streaming client may keep the server waiting while it reads "
        "(the model waits with it): then it is cut off and its turn not recorded. A client "
        "that goes away stops its reply at once (default: 10)",
    )
    sp.add_argument(
        "--models",
        metavar="LIST",
        help="what clients may ask for as 'model', comma-separated: CHARACTER (with the default "
        "backend model), CHARACTER@MODEL (a backend model by name), * or *@MODEL for every "
        "installed character (default: $ROLECAST_SERVER_MODELS, else server_models in the config "
        "file, else *)",
    )
    backend_opts(sp, key_flag="--backend-api-key")
    sp.set_defaults(func=cmd_serve)
    from .ingest import add_ingest

    add_ingest(sub, backend_opts)
    from .eval import add_eval

    add_eval(sub, backend_opts)
    from .voice import add_voice

    add_voice(sub, backend_opts)
    sp = sub.add_parser("config", help="show or change settings (the config file)")
    sp.add_argument("action", choices=("list", "get", "set", "unset"))
    sp.add_argument("key", nargs="?", help=f"one of: {', '.join(config.SETTINGS)}")
    sp.add_argument("value", nargs="?")
    sp.set_defaults(func=cmd_config)
    sp = sub.add_parser("pack", help="pack a character into one zip file")
    sp.add_argument("name")
    sp.add_argument("-o", "--output", required=True)
    sp.set_defaults(func=cmd_pack)
    sp = sub.add_parser("install", help="install a character from a zip file")
    sp.add_argument("file")
    sp.add_argument("--name", help="id to install it as")
    sp.add_argument("--force", action="store_true", help="replace an existing character")
    sp.set_defaults(func=cmd_install)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except RolecastError as exc:
        print(f"rolecast: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (rolecast show x | head): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere at exit
        os.close(devnull)
        return 141  # 128 + SIGPIPE, as the shell reports a command a pipe stopped


if __name__ == "__main__":
    sys.exit(main())
