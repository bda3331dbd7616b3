"""Which chat backend, and how it is set up: worked out once, then passed around.

Every command, the web page and the server take their backend from :func:`backend_spec`:
argument > environment > config file > default, in this one place. Backends themselves read
no settings; they take explicit values and refuse what they do not know.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config, registry
from ..errors import InputError
from .base import LLM

if TYPE_CHECKING:
    from ..character.model import Character

# the settings a backend may take, by the name of its constructor's parameter
SETTINGS = ("model", "base_url", "api_key", "timeout", "lora")


@dataclass(frozen=True)
class BackendSpec:
    """A chat backend by name with its settings. ``given`` names the settings the user
    passed explicitly (a flag, an argument): those are refused by a backend that does not
    take them; settings found in the environment or the file only go where they are taken."""

    name: str = "local"
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    timeout: float | None = None
    lora: str | None = None  # an adapter folder (the local backend)
    given: frozenset[str] = field(default=frozenset(), compare=False)

    def with_model(self, model: str | None) -> BackendSpec:
        """The same backend with another model (None: this one's)."""
        return self if model is None else replace(self, model=model)

    def for_character(self, character: Character) -> BackendSpec:
        """This backend with the character's own model (its ``[model]`` table) where the
        user named neither a model nor an adapter and the backend is the local one. A
        relative ``lora`` is inside the character's package."""
        choice = character.model
        if choice is None or self.name != "local" or self.given & {"model", "lora"}:
            return self
        lora = choice.lora or None
        root = character.extra.get("_root")
        if lora and root and not Path(lora).expanduser().is_absolute():
            lora = str(Path(str(root)) / lora)
        return replace(self, model=choice.base or self.model, lora=lora)

    def options(self) -> dict[str, Any]:
        """The settings this backend takes, as keyword arguments for it."""
        return self._options(_parameters(registry.resolve("llm", self.name)))

    def _options(self, taken: set[str] | _Anything) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in SETTINGS:
            value = getattr(self, key)
            if value is None:
                continue
            if key in taken:
                out[key] = value
            elif key in self.given:
                takes = ", ".join(k.replace("_", "-") for k in SETTINGS if k in taken)
                raise InputError(
                    f"the {self.name} backend takes no {key.replace('_', '-')} "
                    f"(it takes: {takes or 'none of these settings'})"
                )
        return out

    def open(self, **extra: Any) -> LLM:
        """The backend, made now (a local model loads here). ``extra`` are backend-specific
        arguments a caller knows it wants (a progress printer, a seed)."""
        cls = registry.resolve("llm", self.name)
        taken = _parameters(cls)
        llm: LLM = cls(**self._options(taken), **{k: v for k, v in extra.items() if k in taken})
        return llm


class _Anything:
    """The parameters of a factory that takes ``**kwargs``: every name."""

    def __contains__(self, name: object) -> bool:
        return True


def _parameters(cls: Any) -> set[str] | _Anything:
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return _Anything()
    return set(params)


def backend_spec(
    backend: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
    file: Mapping[str, Any] | None = None,
    lora: str | None = None,
) -> BackendSpec:
    """The backend a user asked for: each setting from the argument, else the environment,
    else the config file, else its default. An unknown backend name fails here, at once."""
    data = config.read_file(environ) if file is None else file
    given = {
        k
        for k, v in {"model": model, "base_url": base_url, "api_key": api_key, "lora": lora}.items()
        if v
    } | ({"timeout"} if timeout is not None else set())
    name = config.resolve("backend", backend, environ, data) or "local"
    registry.resolve("llm", name)  # unknown: an error listing the known ones, before any work
    seconds = config.resolve("timeout", None, environ, data) if timeout is None else timeout
    return BackendSpec(
        name=name,
        model=config.resolve("model", model, environ, data),
        base_url=config.resolve("base_url", base_url, environ, data),
        api_key=config.resolve("api_key", api_key, environ, data),
        timeout=float(seconds) if seconds is not None else None,
        lora=lora,
        given=frozenset(given),
    )


def embedder_name(
    embedder: str | None = None,
    environ: Mapping[str, str] | None = None,
    file: Mapping[str, Any] | None = None,
) -> str:
    """The canon retrieval embedder a user asked for (argument > environment > file > use)."""
    data = config.read_file(environ) if file is None else file
    name = config.resolve("embedder", embedder, environ, data) or "use"
    registry.resolve("embedder", name)
    return name
