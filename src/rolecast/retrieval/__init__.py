"""Canon retrieval: embedders, a lexical index, hybrid ranking and the on-disk index cache."""

from .hybrid import CanonIndex, Hit
from .index import load_index

__all__ = ["CanonIndex", "Hit", "load_index"]
