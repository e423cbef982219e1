"""Small JSON caches in the storage directory: read leniently, written atomically.

What the agent learns and keeps beside the ledger (each drive's turnaround, the points where the
operator's strategy was seen) is a cache of measurements, never configuration: a missing,
unreadable or damaged file only means the agent learns it again.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def read_json(path: Path) -> object:
    """The file's JSON value; None if there is no file or it is not JSON."""
    try:
        value: object = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value


def finite_number(value: object) -> bool:
    """A JSON number that is a finite float (not a bool, which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def write_json(path: Path, value: object) -> None:
    """Write ``value`` atomically: a reader (or a start after a SIGKILL) sees the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, path)
