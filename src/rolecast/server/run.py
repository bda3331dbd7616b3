"""Start the server: settings from flags and the environment, then uvicorn."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import config
from .app import MAX_BODY, ServerState, create_app
from .keys import RATE_PER_MINUTE, Keys, RateLimiter, check_bind
from .storage import open_store

DEFAULT_PORT = 8000


def build_state(
    *,
    api_keys: Sequence[str] = (),
    database_url: str | None = None,
    backend: str = "local",
    model: str | None = None,
    llm_options: dict[str, Any] | None = None,
    embedder: str = "use",
    rate: int = RATE_PER_MINUTE,
    max_body: int = MAX_BODY,
    environ: Mapping[str, str] | None = None,
) -> ServerState:
    env = os.environ if environ is None else environ
    keys = Keys.parse(api_keys, env.get("ROLECAST_SERVER_KEYS"))
    url = database_url or env.get("ROLECAST_DATABASE_URL")
    store = open_store(url, config.home(env) / "server.sqlite3")
    return ServerState(
        store=store,
        keys=keys,
        backend=backend,
        model=model,
        llm_options=llm_options or {},
        embedder=embedder,
        max_body=max_body,
        limiter=RateLimiter(rate),
        timings=Path(env["ROLECAST_SERVER_TIMINGS"])
        if env.get("ROLECAST_SERVER_TIMINGS")
        else None,
    )


def serve(state: ServerState, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    import uvicorn

    check_bind(host, state.keys)
    uvicorn.run(create_app(state), host=host, port=port, log_level="warning", access_log=False)
