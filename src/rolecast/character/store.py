"""Where packages are found: the user's folder first, then the ones installed with rolecast."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .. import config
from ..errors import UnknownNameError
from .model import Character
from .package import TOML, load_character

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "builtin"
DEFAULT_CHARACTER = "xiaoman"


def package_dirs(environ: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Every package by id; a user package shadows a built-in one of the same id."""
    found: dict[str, Path] = {}
    for base in (BUILTIN_DIR, config.characters_dir(environ)):
        if base.is_dir():
            for d in sorted(base.iterdir()):
                if d.is_dir() and not d.name.startswith(".") and (d / TOML).is_file():
                    found[d.name] = d
    return found


def find_package(name: str, environ: Mapping[str, str] | None = None) -> Path:
    """The folder of the package named ``name``: its id, its name or one of its aliases.

    A path to a package folder or zip is accepted as is.
    """
    p = Path(name)
    if (p / TOML).is_file() or (p.suffix == ".zip" and p.is_file()):
        return p
    dirs = package_dirs(environ)
    if name in dirs:
        return dirs[name]
    for d in dirs.values():
        c = load_character(d)
        if name == c.name or name in c.aliases:
            return d
    raise UnknownNameError("character", name, list(dirs))


def load(name: str, environ: Mapping[str, str] | None = None) -> Character:
    return load_character(find_package(name, environ))


def user_package_path(cid: str, environ: Mapping[str, str] | None = None) -> Path:
    return config.characters_dir(environ) / cid
