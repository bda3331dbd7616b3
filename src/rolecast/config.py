"""Where rolecast keeps things: argument > environment > default.

Everything takes the environment as a parameter so tests never touch global state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "rolecast"


def home(environ: Mapping[str, str] | None = None) -> Path:
    """The folder holding character packages: $ROLECAST_HOME or the user data folder."""
    env = os.environ if environ is None else environ
    explicit = env.get("ROLECAST_HOME")
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def characters_dir(environ: Mapping[str, str] | None = None) -> Path:
    return home(environ) / "characters"
