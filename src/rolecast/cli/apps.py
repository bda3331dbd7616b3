"""The long-running front ends: `rolecast web` (the page) and `rolecast serve` (the
OpenAI-compatible server)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .. import config
from .common import backend_from, backend_opts, character_arg, embedder_from, turn_opts


def cmd_web(args: argparse.Namespace) -> int:
    from ..web.access import AUTH_ENV, Credentials, check_exposure
    from ..web.app import WebApp
    from ..web.page import launch

    credentials = Credentials.parse(args.auth or [], os.environ.get(AUTH_ENV))
    check_exposure(args.host, args.share, credentials)  # before anything loads
    app = WebApp(
        args.name,
        backend=backend_from(args),
        embedder=embedder_from(args),
        allowed_models=args.allow_model or [],
        save=not args.no_save,
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

    state = build_state(
        api_keys=args.api_key_server or [],
        database_url=args.database_url,
        backend=backend_from(args),
        embedder=embedder_from(args),
        rate=args.rate,
        max_body=args.max_body,
        body_timeout=args.body_timeout,
        send_timeout=args.send_timeout,
        models=config.resolve("server_models", args.models),
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


def add_web(sub: Any) -> None:
    sp = sub.add_parser("web", help="chat in the browser: canon and scene images beside the reply")
    character_arg(sp, "character shown first")
    sp.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1); any other needs --auth",
    )
    sp.add_argument("--port", type=int, default=7860)
    sp.add_argument(
        "--no-save",
        action="store_true",
        help="do not save the page's chats (saved by default in the server's store, listed by "
        "`rolecast chats`)",
    )
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


def add_serve(sub: Any) -> None:
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
