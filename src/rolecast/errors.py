"""The exception tree. The CLI turns any RolecastError into a clean message."""

from __future__ import annotations

from pathlib import Path


def plural(noun: str) -> str:
    """``noun`` + "s", except for one that already ends in "s" ("tts", "TTS backends")."""
    return noun if noun.endswith("s") else noun + "s"


class RolecastError(Exception):
    """Base of every error meant for the user: its message says what is wrong and what to do."""

    exit_code = 1


class UnknownNameError(RolecastError, KeyError):
    """A backend, embedder or character name that is not known."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        listing = ", ".join(self.known) if self.known else "(none)"
        super().__init__(f"unknown {kind} {name!r}; known {plural(kind)}: {listing}")

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])


class MissingDependencyError(RolecastError):
    """An optional dependency is not installed; the message names the pip command."""

    def __init__(self, what: str, package: str, extra: str | None = None):
        hint = f"pip install 'rolecast[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{what} needs the {package!r} package, which is not installed: {hint}")


class ParseError(RolecastError):
    """A line or file that cannot be read; names the file and (1-based) line."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path, self.line, self.reason = path, line, message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class PackageError(RolecastError):
    """A character package that is missing, malformed or cannot be written."""


class BackendError(RolecastError):
    """An LLM backend failed in a way the user should see."""


class NoReplyError(BackendError):
    """The model gave no answer that could be shown, after the retries a reply may have."""


class InputError(RolecastError, ValueError):
    """Something the user typed or passed that cannot be used as it is."""


class VoiceError(RolecastError):
    """Speech synthesis (or the translation before it) failed in a way the user should see."""
