"""Prompt assembly: token counting and fitting persona, canon and history into a budget.

Pure functions over data: nothing here does I/O or calls a model.
"""

from .assemble import Assembly, Budget, Turn, assemble
from .tokens import TokenCounter, quicktok_counter

__all__ = ["Assembly", "Budget", "Turn", "assemble", "TokenCounter", "quicktok_counter"]
