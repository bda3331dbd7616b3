"""The character: its model, its package on disk, and the dialogue-text parser."""

from .model import Character, Line, Scene

__all__ = ["Character", "Line", "Scene"]
