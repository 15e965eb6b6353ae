"""Process settings and option parsing shared by the CLI verbs (and the demo, the benchmark workers)."""

from __future__ import annotations

import logging
import os
from typing import Any

import yaml

from al_core.errors import ALError

#: Telemetry off; Prefect's console handler quiet (the CLI prints its own output and errors).
#: Flow and task logs still reach the Prefect API, so the UI shows them; set
#: PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL=INFO to see them in the terminal too.
QUIET_ENV: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}


def quiet_services() -> None:
    """Apply :data:`QUIET_ENV` (without overriding what the user set) and quiet MLflow's logger."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def parse_sets(items: list[str], example: str = "acquisition.batch_size=20") -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` → ``{"a.b": 1, "c": "x"}``, each value read as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ALError(f"--set {item!r}: expected KEY=VALUE, e.g. --set {example}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out
