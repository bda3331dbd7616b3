"""Who may reach ``rolecast web``, and what its settings panel may load.

Without credentials the page listens on loopback only, and never through a public share
link: whoever reaches it may chat, pick models and read the files the page serves. With
``--auth USER:PASSWORD`` (or ``$ROLECAST_WEB_AUTH``) every route, files included, asks for
them first. Either way the settings panel loads only the local backend's catalogue names and
what the operator allowed (``--allow-model``): a path typed into the page would load any
file the server can read, and ``hf:OWNER/REPO/FILE`` would download one.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

AUTH_ENV = "ROLECAST_WEB_AUTH"
MIN_PASSWORD = 8  # characters; as for the server's API keys


@dataclass(frozen=True)
class Credentials:
    """Users and passwords for the page (Gradio's login form); none: loopback only."""

    users: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def parse(cls, flags: Iterable[str], environ_value: str | None) -> Credentials:
        """``--auth USER:PASSWORD`` flags (repeatable) and ``$ROLECAST_WEB_AUTH`` (the same,
        comma-separated: a password with a comma in it goes in a flag)."""
        users = []
        for item in [*flags, *(environ_value or "").split(",")]:
            if not item.strip():
                continue
            user, colon, password = item.strip().partition(":")
            if not colon or not user.strip() or not password:
                raise InputError(
                    f"web credentials are written USER:PASSWORD (--auth or ${AUTH_ENV}), "
                    f"not {user.strip() or '(nothing)'}{':...' if colon else ''}"
                )
            if len(password) < MIN_PASSWORD:
                raise InputError(
                    f"the web password of {user.strip()!r} needs at least {MIN_PASSWORD} characters"
                )
            users.append((user.strip(), password))
        return cls(tuple(users))

    def __bool__(self) -> bool:
        return bool(self.users)

    def check(self, user: str, password: str) -> bool:
        """Gradio's login check; every pair is compared, in constant time."""
        ok = False
        for known_user, known_password in self.users:
            same_user = hmac.compare_digest(known_user.encode(), user.encode())
            same_password = hmac.compare_digest(known_password.encode(), password.encode())
            ok |= same_user & same_password
        return ok


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_exposure(host: str, share: bool, credentials: Credentials) -> None:
    """Without credentials, loopback only: a page on a network is anybody's page."""
    if credentials:
        return
    fix = f"give --auth USER:PASSWORD (or set {AUTH_ENV}=USER:PASSWORD)"
    if share:
        raise InputError(f"refusing a public share link without credentials: {fix}")
    if not is_loopback(host):
        raise InputError(
            f"refusing to listen on {host} without credentials: {fix}, or listen on 127.0.0.1"
        )


@dataclass(frozen=True)
class ModelPolicy:
    """The models the settings panel may load: the local backend's catalogue names, the
    model the operator started with, and those allowed with ``--allow-model``."""

    started: str | None = None
    allowed: tuple[str, ...] = ()

    def names(self) -> list[str]:
        from ..backends.models import ALIASES, MODELS

        named = [*MODELS, *ALIASES]
        extra = [m for m in (self.started, *self.allowed) if m and m not in named]
        return [*named, *dict.fromkeys(extra)]

    def check(self, model: str | None) -> None:
        """Refuse (InputError) a model the page may not load; ``None`` is the started one."""
        if not model or model in self.names():
            return
        given = _resolved(model)  # the same file written another way is the same model
        if given is not None and any(
            given == _resolved(m) for m in (self.started, *self.allowed) if m
        ):
            return
        raise InputError(
            f"the page may not load the model {model!r}: pick one of "
            f"{', '.join(self.names())} (the operator can allow more with --allow-model)"
        )


def _resolved(model: str) -> str | None:
    if model.startswith("hf:"):
        return None
    try:
        return str(Path(model).expanduser().resolve())
    except (OSError, RuntimeError, ValueError):  # a loop of links, a NUL byte
        return None
