"""`rolecast eval ...` and `rolecast viz`: measure how well a character is played."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_eval(sub: Any, backend_opts: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the eval and viz commands to the `rolecast` parser."""
