"""Where packages are found: the user's folder first, then the ones installed with rolecast.

Reading the user's folder first finishes what an interrupted write left there
(:func:`rolecast.files.recover_dirs`): a package hidden by a swap cut short is put back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..errors import RolecastError, UnknownNameError
from ..files import recover_dirs
from .model import Character
from .package import TOML, load_character

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "builtin"
DEFAULT_CHARACTER = "xiaoman"
log = logging.getLogger(__name__)


def package_dirs(environ: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Every package by id; a user package shadows a built-in one of the same id."""
    found: dict[str, Path] = {}
    user = config.characters_dir(environ)
    recover_dirs(user)
    for base in (BUILTIN_DIR, user):
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
    for found in scan(environ, dirs):
        c = found.character
        if c is None:
            log.warning("skipped the character package %s: %s", found.id, found.problem)
        elif name == c.name or name in c.aliases:
            return found.path
    raise UnknownNameError("character", name, list(dirs))


@dataclass(frozen=True)
class Found:
    """A package of the store, loaded, or the reason it cannot be."""

    id: str
    path: Path
    character: Character | None
    problem: str = ""  # why it cannot be loaded, its folder named by the package id

    @property
    def builtin(self) -> bool:
        return self.path.parent == BUILTIN_DIR


def scan(
    environ: Mapping[str, str] | None = None, dirs: Mapping[str, Path] | None = None
) -> list[Found]:
    """Every package loaded; one that cannot be is kept with its problem, so that one broken
    package does not hide the others."""
    out = []
    for cid, path in (package_dirs(environ) if dirs is None else dirs).items():
        try:
            out.append(Found(cid, path, load_character(path)))
        except (RolecastError, OSError) as exc:
            problem = str(exc).replace(str(path), cid)  # the id, not the user's home folder
            out.append(Found(cid, path, None, problem))
    return out


def load(name: str, environ: Mapping[str, str] | None = None) -> Character:
    return load_character(find_package(name, environ))


def user_package_path(cid: str, environ: Mapping[str, str] | None = None) -> Path:
    return config.characters_dir(environ) / cid
