"""A worker process for large embedding jobs: ``python -m rolecast.retrieval._embed_worker NAME``.

Reads a JSON list of texts on stdin and writes their raw (un-normalised) vectors as
one ``.npy`` array on stdout. Started by ``Embedder.embed_documents``.
"""

from __future__ import annotations

import io
import json
import sys

import numpy as np

from .embedders import get_embedder


def main() -> int:
    embedder = get_embedder(sys.argv[1])
    texts = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    buf = io.BytesIO()
    np.save(buf, embedder._embed_many(texts), allow_pickle=False)
    sys.stdout.buffer.write(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
