"""The Hub stand-in ships in fixtures/ (`make demo` serves the demo model with it); tests import
it from here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures"))

from hub_standin import *  # noqa: E402,F403
from hub_standin import HubStandIn, Seen, ServerThread, git_env  # noqa: E402,F401
