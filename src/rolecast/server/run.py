"""Start the server: settings from flags and the environment, then uvicorn."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import config
from ..backends.spec import BackendSpec
from ..character import store as characters
from ..errors import InputError
from ..store import open_store
from .allowed import Allowed
from .app import MAX_BODY, ServerState, create_app
from .keys import RATE_PER_MINUTE, Keys, RateLimiter, check_bind
from .streams import BODY_TIMEOUT, SEND_TIMEOUT

DEFAULT_PORT = 8000


def build_state(
    *,
    api_keys: Sequence[str] = (),
    database_url: str | None = None,
    backend: BackendSpec | str = "local",
    model: str | None = None,
    embedder: str = "use",
    rate: int = RATE_PER_MINUTE,
    max_body: int = MAX_BODY,
    body_timeout: float = BODY_TIMEOUT,
    send_timeout: float = SEND_TIMEOUT,
    models: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerState:
    """``models``: what clients may choose (see ``allowed.py``); None lets them talk to every
    installed character with the default backend model."""
    env = os.environ if environ is None else environ
    keys = Keys.parse(api_keys, env.get("ROLECAST_SERVER_KEYS"))
    spec = backend if isinstance(backend, BackendSpec) else BackendSpec(name=backend, model=model)
    allowed = Allowed.parse(models, spec.model)  # before anything opens: a wrong list stops here
    installed = characters.package_dirs(environ)
    missing = [c for c in allowed.characters() if c not in installed]
    if missing:
        raise InputError(
            f"--models names characters that are not installed: {', '.join(missing)}; "
            f"installed: {', '.join(installed) or '(none)'}"
        )
    url = database_url or env.get("ROLECAST_DATABASE_URL")
    store = open_store(url, config.home(env) / "server.sqlite3")
    return ServerState(
        store=store,
        keys=keys,
        spec=spec,
        embedder=embedder,
        max_body=max_body,
        body_timeout=body_timeout,
        send_timeout=send_timeout,
        limiter=RateLimiter(rate),
        models=models,
        timings=Path(env["ROLECAST_SERVER_TIMINGS"])
        if env.get("ROLECAST_SERVER_TIMINGS")
        else None,
    )


def serve(state: ServerState, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    import uvicorn

    check_bind(host, state.keys)
    uvicorn.run(create_app(state), host=host, port=port, log_level="warning", access_log=False)
