"""`rolecast say` and the voice options of `rolecast chat`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_voice(sub: Any, backend_opts: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the `say` command to the `rolecast` parser."""
