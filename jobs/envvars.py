"""``~`` and ``$VARS`` in paths a user writes (a spec's paths, ``stage --to``), where an unset variable is an error.

A module of its own so that a light command (``clusterdeck stage``) expands a path without loading the spec's
pydantic models.
"""

from __future__ import annotations

import os
import re
from typing import Any

_UNSET_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def expand_vars(value: Any) -> Any:
    """Expand ``~`` and ``$VARS``; an unset variable is an error, not a literal ``$``."""
    if not isinstance(value, str):
        return value
    expanded = os.path.expanduser(os.path.expandvars(value))
    missing = _UNSET_VAR.search(expanded)
    if missing:
        raise ValueError(f"environment variable ${missing.group(1)} is not set")
    return expanded
