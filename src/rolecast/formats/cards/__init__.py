"""Character cards (SillyTavern style): V1, V2 and V3 as JSON, PNG or CHARX, read and written.

    JSON    a card object: V1 has its fields at the top; V2/V3 hold them under ``data``
    PNG     the card JSON, base64, in a ``tEXt`` (or ``zTXt``/``iTXt``) chunk named ``chara``
            (V1/V2) or ``ccv3`` (V3); ``ccv3`` wins when both are there
    CHARX   a zip with ``card.json`` (V3) at its root and assets named in ``data.assets``
            (``embeded://assets/icon/images/main.png``)

Everything here works on bytes in memory: nothing is written to disk. Every problem with
the input is a ``ParseError`` whose message names what is wrong; sizes are capped before
anything is allocated, so a hostile file cannot exhaust memory.

An exported card carries the whole rolecast character under ``data.extensions.rolecast``,
so importing it again gives the same character back; other tools ignore that extension.

The modules, by concept:

    importer   import_card, CardImport, fuzz_one: bytes -> Character and images
    exporter   export_card: Character -> JSON, PNG or CHARX bytes
    png        PNG chunks read and written, card text chunks, placeholder_png
    charx      the CHARX zip, read through rolecast.character.safezip, and written
    fields     JSON decoding (size, depth, surrogates) and card field checks
    from_card  a foreign card -> Character: compose_persona, parse_mes_example, derive_id
    to_card    Character -> card objects: card_v3, card_v2, sample_mes_example
    payload    the whole character under extensions.rolecast, written and restored
    limits     the size caps; set them there (``limits.MAX_TOTAL = ...``) to change them
"""

from __future__ import annotations

from .charx import ZIP_MAGIC
from .exporter import Format, export_card
from .from_card import IMAGE_EXTS, compose_persona, derive_id, parse_mes_example
from .importer import CardImport, fuzz_one, import_card
from .limits import (
    MAX_CENTRAL_DIR,
    MAX_CHUNK,
    MAX_CHUNKS,
    MAX_DEPTH,
    MAX_FILE,
    MAX_MEMBER,
    MAX_MEMBERS,
    MAX_TOTAL,
)
from .payload import PAYLOAD_VERSION
from .png import CARD_KEYWORDS, PNG_SIGNATURE, placeholder_png, png_chunks
from .to_card import (
    MES_EXAMPLE_CHARS,
    MES_EXAMPLE_SCENES,
    V3_ONLY,
    card_v2,
    card_v3,
    sample_mes_example,
)

__all__ = [
    "CARD_KEYWORDS",
    "IMAGE_EXTS",
    "MAX_CENTRAL_DIR",
    "MAX_CHUNK",
    "MAX_CHUNKS",
    "MAX_DEPTH",
    "MAX_FILE",
    "MAX_MEMBER",
    "MAX_MEMBERS",
    "MAX_TOTAL",
    "MES_EXAMPLE_CHARS",
    "MES_EXAMPLE_SCENES",
    "PAYLOAD_VERSION",
    "PNG_SIGNATURE",
    "V3_ONLY",
    "ZIP_MAGIC",
    "CardImport",
    "Format",
    "card_v2",
    "card_v3",
    "compose_persona",
    "derive_id",
    "export_card",
    "fuzz_one",
    "import_card",
    "parse_mes_example",
    "placeholder_png",
    "png_chunks",
    "sample_mes_example",
]
