"""Fault injection for the recovery tests: ``ALP_FAULT=step`` kills the process at that named step.

``ALP_FAULT`` holds one step name or several, comma-separated. At a matching :func:`point` the process
sends itself SIGKILL, as an operator's ``kill -9`` or an out-of-memory kill would: no ``finally``,
no ``atexit``. Unset (the normal case), :func:`point` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal


def point(name: str) -> None:
    """Die here (SIGKILL) if ``name`` is listed in ``$ALP_FAULT``."""
    spec = os.environ.get("ALP_FAULT")
    if spec and name in {s.strip() for s in spec.split(",")}:
        os.kill(os.getpid(), signal.SIGKILL)
