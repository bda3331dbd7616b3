"""What a client may name as ``model``: the characters and backend models the operator allowed.

A client's ``model`` is matched, as a string, against this list and nothing else: it is never
a path, never a hub reference, never looked up on disk. The list (``rolecast serve --models``,
``$ROLECAST_SERVER_MODELS`` or ``server_models`` in the config file) is comma-separated:

- ``xiaoman``: that character with the server's default backend model;
- ``xiaoman@qwen2.5-coder-0.5b``: that character with the backend model named after the ``@``;
- ``*`` (the default): every installed character with the default model; ``*@MODEL``: every
  installed character with MODEL.

The default model can also be named after the ``@`` (``xiaoman@MODEL`` where MODEL is the
server's ``--model``). Backend models are named here as the backend knows them; a model file
or an ``hf:`` reference can only be the server's own ``--model``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from ..errors import InputError
from .errors import ApiError, public

EVERY = "*"
SHOWN = 64  # characters of a client's model string repeated in an error
_CHARACTER_ID = re.compile(r"[\w][\w.-]*")  # a package folder's name, never a path


def not_found(model: str) -> ApiError:
    """OpenAI's 404 for a model: the same words whether it is not allowed, not installed or
    broken, so that nothing is learnt about the server's disk (nor repeated from it)."""
    shown = public(model if len(model) <= SHOWN else model[:SHOWN] + "…")
    return ApiError(
        404,
        f"The model {shown!r} does not exist or you do not have access to it "
        "(GET /v1/models lists the models)",
        "invalid_request_error",
        "model_not_found",
    )


def _looks_like_a_file(model: str) -> bool:
    return (
        model.startswith(("/", "~", ".", "hf:"))
        or "\\" in model
        or model.lower().endswith(".gguf")
        or re.match(r"[A-Za-z]:", model) is not None
    )


@dataclass(frozen=True)
class Allowed:
    # (character id or EVERY, backend model or None for the server's default)
    entries: tuple[tuple[str, str | None], ...] = ((EVERY, None),)
    default_model: str | None = None

    @classmethod
    def parse(cls, spec: str | None, default_model: str | None = None) -> Allowed:
        """The list from ``--models``; ``None`` or empty allows every character with the
        default model. Raises ``InputError`` for an entry that is not a name."""
        if not spec or not spec.strip():
            return cls(default_model=default_model)
        entries: list[tuple[str, str | None]] = []
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            character, at, model = (s.strip() for s in item.partition("@"))
            if character != EVERY and not _CHARACTER_ID.fullmatch(character):
                raise InputError(
                    f"--models: {item!r}: a character is named by its id (or * for every "
                    "installed character)"
                )
            if at and not model:
                raise InputError(f"--models: {item!r}: no backend model after the '@'")
            if model and _looks_like_a_file(model):
                raise InputError(
                    f"--models: {item!r}: backend models are allowed by name, not as a file or "
                    "hf: reference; serve such a model as the default, with --model"
                )
            entry = (character, None if model == default_model else (model or None))
            if entry not in entries:
                entries.append(entry)
        if not entries:
            return cls(default_model=default_model)
        return cls(tuple(entries), default_model)

    def characters(self) -> list[str]:
        """The characters named one by one (not through ``*``)."""
        return sorted({c for c, _ in self.entries if c != EVERY})

    def resolve(self, model: str, installed: Collection[str]) -> tuple[str, str | None]:
        """The character id and backend model (None: the default) a client's ``model``
        names, or the 404 ``not_found`` when that is not allowed or not installed."""
        character, at, backend_model = model.strip().partition("@")
        wanted: str | None = backend_model.strip() or None
        if at and wanted is None:
            raise not_found(model)
        if wanted == self.default_model:
            wanted = None
        character = character.strip()
        if character not in installed:
            raise not_found(model)
        if (character, wanted) in self.entries or (EVERY, wanted) in self.entries:
            return character, wanted
        raise not_found(model)

    def character_ids(self, installed: Iterable[str]) -> list[str]:
        """The installed characters a client may talk to, with one backend model or another."""
        present = list(installed)
        return [c for c in present if any(e in (EVERY, c) for e, _ in self.entries)]

    def ids(self, installed: Iterable[str]) -> list[str]:
        """Every model id a client may use, as ``/v1/models`` lists them."""
        present = list(installed)
        out: list[str] = []
        for character, model in self.entries:
            for cid in present if character == EVERY else [character]:
                if cid not in present:
                    continue
                mid = cid if model is None else f"{cid}@{model}"
                if mid not in out:
                    out.append(mid)
        return out
