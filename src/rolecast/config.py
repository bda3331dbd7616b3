"""Settings in one place: explicit argument > environment > config file > default.

Everything takes the environment as a parameter so tests never touch global state.
The config file is ``$ROLECAST_HOME/config.toml``, written by ``rolecast config``: always
mode 600 (it may hold keys), by one writer at a time (a lock on ``config.toml.lock``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import InputError, ParseError

if sys.version_info >= (3, 11):
    import tomllib as tomllib  # re-exported: the package reads TOML through this one name
else:  # pragma: no cover
    import tomli as tomllib

APP_NAME = "rolecast"

# setting -> (environment variables, first wins; default; what it is)
SETTINGS: dict[str, tuple[tuple[str, ...], str | None, str]] = {
    "backend": (("ROLECAST_BACKEND",), "local", "LLM backend: local, openai, echo, scripted"),
    "model": (("ROLECAST_MODEL",), None, "model name for the backend (local: name, path, hf:...)"),
    "base_url": (
        ("ROLECAST_BASE_URL", "OPENAI_BASE_URL"),
        None,
        "openai backend: the endpoint, e.g. http://127.0.0.1:8080/v1",
    ),
    "api_key": (("ROLECAST_API_KEY", "OPENAI_API_KEY"), None, "openai backend: the API key"),
    "timeout": (("ROLECAST_TIMEOUT",), "60", "openai backend: seconds to wait for data"),
    "embedder": (("ROLECAST_EMBEDDER",), "use", "embedder for canon retrieval: use, e5"),
    "tts_model": (("ROLECAST_TTS_MODEL",), "tts-1", "openai TTS backend: the speech model"),
    "tts_base_url": (
        ("ROLECAST_TTS_BASE_URL",),
        None,
        "openai TTS backend: the endpoint when it is not base_url's",
    ),
    "tts_api_key": (
        ("ROLECAST_TTS_API_KEY",),
        None,
        "openai TTS backend: the key when it is not api_key's",
    ),
    "server_models": (
        ("ROLECAST_SERVER_MODELS",),
        None,
        "rolecast serve: what clients may ask for, e.g. 'xiaoman,mia@smollm2-135m' "
        "(default: every installed character with the default model)",
    ),
}


def home(environ: Mapping[str, str] | None = None) -> Path:
    """The folder holding character packages: $ROLECAST_HOME or the user data folder."""
    env = os.environ if environ is None else environ
    explicit = env.get("ROLECAST_HOME")
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def characters_dir(environ: Mapping[str, str] | None = None) -> Path:
    return home(environ) / "characters"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    return home(environ) / "config.toml"


def read_file(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    path = config_path(environ)
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ParseError(f"invalid TOML: {exc}", path) from None
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise ParseError(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}", path)
    return data


def _check_key(key: str) -> None:
    if key not in SETTINGS:
        raise InputError(f"unknown setting {key!r}; known settings: {', '.join(SETTINGS)}")


def resolve(
    key: str,
    explicit: str | None = None,
    environ: Mapping[str, str] | None = None,
    file: Mapping[str, Any] | None = None,
) -> str | None:
    """The value of a setting and nothing else: argument > environment > file > default."""
    _check_key(key)
    if explicit is not None:
        return explicit
    env = os.environ if environ is None else environ
    names, default, _ = SETTINGS[key]
    for name in names:
        if env.get(name):
            return env[name]
    data = read_file(environ) if file is None else file
    if key in data:
        return str(data[key])
    return default


# The file is only ever its owner's, whatever it holds: a rule by setting name would miss a
# secret inside another value (a base_url with user:password@) and would make the file
# readable again when the key that needed it is unset, while nothing needs it readable.
FILE_MODE = 0o600


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer at a time (threads or processes): an exclusive lock on a file beside
    ``path``, held while the file is read, changed and replaced."""
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        if sys.platform == "win32":  # pragma: no cover
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
            yield
    finally:
        os.close(fd)


def write_setting(key: str, value: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """Set (or, with ``None``, remove) a setting in the config file: atomically, under a
    lock (concurrent writers of different settings all keep theirs), mode 600."""
    import tomli_w

    _check_key(key)
    path = config_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        data = read_file(environ)
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
        # mkstemp makes the file 600 from the start: the secret is never readable by others
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(tomli_w.dumps(data))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path
