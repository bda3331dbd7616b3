"""Scenes with several characters: who speaks next, and the shared history."""
