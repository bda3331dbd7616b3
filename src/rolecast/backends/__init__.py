"""LLM backends behind one small streaming contract, found by name in the registry."""

from .base import LLM, GenerationParams, get_llm

__all__ = ["LLM", "GenerationParams", "get_llm"]
