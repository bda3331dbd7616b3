"""The built index of a character: a cache keyed on embedder name and canon content hash.

    $ROLECAST_HOME/index/<character id>/<embedder>/<canon hash[:16]>/
        manifest.json  vectors.npy  unit_scene.npy  bm25/

A build writes into a temporary folder and renames it into place, so an interrupted
build leaves the previous index intact; a stale index (canon changed) is rebuilt
on load. Never edit these files by hand: delete the folder to force a rebuild.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .. import __version__, config
from ..character.model import Character
from ..files import staging_dir
from .embedders import Embedder, get_embedder
from .hybrid import CanonIndex, dense_units, lexical_document
from .lexical import LEXICAL_VERSION, LexicalIndex

log = logging.getLogger(__name__)
FORMAT = 1


def index_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where indexes are kept: ``$ROLECAST_INDEX_DIR``, else ``$ROLECAST_HOME/index``. An
    index's folder is named by its canon's hash, so one folder can serve several homes
    (the test suite shares one, so each index is built once)."""
    env = os.environ if environ is None else environ
    explicit = env.get("ROLECAST_INDEX_DIR")
    return Path(explicit).expanduser() if explicit else config.home(environ) / "index"


def index_digest(character: Character) -> str:
    """What an index depends on: the canon (its hash), and which of its speakers are
    narrators, since narration is left out of the embedded units. Two characters that share
    an id and scenes but not their narrators get two indexes."""
    narrating = sorted(
        {
            ln.speaker
            for s in character.scenes
            for ln in s.lines
            if character.is_narrator(ln.speaker)
        }
    )
    blob = json.dumps([character.canon_hash(), narrating], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def index_dir(
    character: Character, embedder_name: str, root: Path, digest: str | None = None
) -> Path:
    digest = digest or index_digest(character)
    return root / character.id / embedder_name / digest[:16]


def build_index(
    character: Character, embedder: Embedder, root: Path, digest: str | None = None
) -> Path:
    """Build (or rebuild) the index of ``character`` and return its folder."""
    digest = digest or index_digest(character)
    dest = index_dir(character, embedder.name, root, digest)
    started = time.perf_counter()
    texts, owner = dense_units(character)
    with staging_dir(dest) as tmp:
        np.save(tmp / "vectors.npy", embedder.embed_documents(texts))
        np.save(tmp / "unit_scene.npy", np.asarray(owner, dtype=np.int64))
        if character.scenes:
            LexicalIndex.build([lexical_document(s) for s in character.scenes]).save(tmp / "bm25")
        manifest = {
            "format": FORMAT,
            "lexical": LEXICAL_VERSION,
            "rolecast": __version__,
            "embedder": embedder.name,
            "dim": embedder.dim,
            "index_digest": digest,
            "scenes": len(character.scenes),
            "lines": sum(len(s.lines) for s in character.scenes),
            "units": len(texts),
            "seconds": round(time.perf_counter() - started, 3),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    for other in dest.parent.iterdir():  # older builds of this character and embedder
        if other != dest and not other.name.startswith("."):
            shutil.rmtree(other, ignore_errors=True)
    return dest


def _read(character: Character, embedder: Embedder, folder: Path, digest: str) -> CanonIndex | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if (
            manifest.get("format") != FORMAT
            or manifest.get("lexical") != LEXICAL_VERSION
            or manifest.get("index_digest") != digest
        ):
            return None
        vectors = np.load(folder / "vectors.npy")
        unit_scene = np.load(folder / "unit_scene.npy")
        lexical = LexicalIndex.load(folder / "bm25") if character.scenes else None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("index at %s is unreadable (%s); rebuilding", folder, exc)
        return None
    if vectors.shape != (len(unit_scene), embedder.dim):
        return None
    return CanonIndex(character, embedder, vectors, unit_scene, lexical)


def load_index(
    character: Character,
    embedder: Embedder | str = "use",
    root: Path | None = None,
    rebuild: bool = False,
) -> CanonIndex:
    """The index of ``character``, built first if missing or stale."""
    if isinstance(embedder, str):
        embedder = get_embedder(embedder)
    root = index_root() if root is None else root
    if not character.scenes:
        log.warning("%s has no canon scenes: replies rest on the persona alone", character.name)
    digest = index_digest(character)  # hashing the canon costs ~30 ms on 1,400 scenes: once
    folder = index_dir(character, embedder.name, root, digest)
    index = None if rebuild or not folder.exists() else _read(character, embedder, folder, digest)
    if index is None:
        folder = build_index(character, embedder, root, digest)
        index = _read(character, embedder, folder, digest)
        assert index is not None, f"freshly built index at {folder} failed to load"
    return index
