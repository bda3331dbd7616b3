"""Token counting with the target model's tokenizer.

Offline encodings come from ``quicktok-v1`` (cl100k_base, o200k_base, llama3, qwen3);
a backend that knows its exact tokenizer passes its own counter instead.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

DEFAULT_ENCODING = "qwen3"
ENCODINGS = ("qwen3", "llama3", "cl100k_base", "o200k_base")
_CACHE_SIZE = 8192


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class FunctionCounter:
    """Any ``str -> list[int]``-like encode function as a memoising counter."""

    def __init__(self, name: str, encode: Callable[[str], list[int]]) -> None:
        self.name = name
        self._encode = encode
        self._memo: OrderedDict[str, int] = OrderedDict()

    def count(self, text: str) -> int:
        n = self._memo.get(text)
        if n is None:
            n = len(self._encode(text)) if text else 0
            self._memo[text] = n
            if len(self._memo) > _CACHE_SIZE:
                self._memo.popitem(last=False)
        return n


def quicktok_counter(encoding: str = DEFAULT_ENCODING) -> FunctionCounter:
    if encoding not in ENCODINGS:
        from ..errors import UnknownNameError

        raise UnknownNameError("token encoding", encoding, list(ENCODINGS))
    import quicktok

    enc = quicktok.get_encoding(encoding)
    return FunctionCounter(encoding, enc.encode_ordinary)


def encoding_for_model(model: str | None) -> str:
    """A quicktok encoding close to ``model``'s tokenizer (by family name)."""
    m = (model or "").lower()
    if "qwen" in m:
        return "qwen3"
    if "llama-3" in m or "llama3" in m:
        return "llama3"
    if "gpt-4o" in m or "gpt-4.1" in m or "o1" in m or "o3" in m or "gpt-5" in m:
        return "o200k_base"
    if "gpt" in m:
        return "cl100k_base"
    return DEFAULT_ENCODING


def truncate(counter: TokenCounter, text: str, max_tokens: int, keep: str = "start") -> str:
    """The longest prefix (``keep="start"``) or suffix of ``text`` within ``max_tokens``."""
    if max_tokens <= 0:
        return ""
    if counter.count(text) <= max_tokens:
        return text
    lo, hi = 0, len(text)  # binary search on characters: never splits a character
    while lo < hi:
        mid = (lo + hi + 1) // 2
        part = text[:mid] if keep == "start" else text[len(text) - mid :]
        if counter.count(part) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] if keep == "start" else text[len(text) - lo :]
