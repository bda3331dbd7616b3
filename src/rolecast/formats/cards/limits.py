"""The size caps on card input, in one place.

Every module reads them here at call time (``limits.MAX_FILE``), so lowering one, as a test
does with ``monkeypatch.setattr(limits, "MAX_TOTAL", 1000)``, takes effect everywhere. The
zip caps are the defaults of :mod:`rolecast.character.safezip`, which enforces them.
"""

from __future__ import annotations

from ...character.safezip import MAX_CENTRAL_DIR, MAX_MEMBER, MAX_MEMBERS, MAX_TOTAL

MAX_FILE = 128 * 1024 * 1024  # a whole card file
MAX_CHUNK = 64 * 1024 * 1024  # one PNG chunk, one inflated text chunk, the card JSON
MAX_CHUNKS = 10_000  # PNG chunks
MAX_DEPTH = 100  # nesting of JSON arrays and objects
# CHARX (zip): MAX_MEMBER bytes per member and MAX_TOTAL in all, uncompressed; at most
# MAX_MEMBERS members and MAX_CENTRAL_DIR bytes of central directory. MAX_MEMBER also caps
# an image read from a package for export.

__all__ = [
    "MAX_CENTRAL_DIR",
    "MAX_CHUNK",
    "MAX_CHUNKS",
    "MAX_DEPTH",
    "MAX_FILE",
    "MAX_MEMBER",
    "MAX_MEMBERS",
    "MAX_TOTAL",
]
