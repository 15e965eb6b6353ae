"""The error hierarchy. Every message says what is wrong and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ALError(Exception):
    """Base class of every error alp raises on purpose."""


class ConfigError(ALError):
    """params.yaml (or a CLI override) holds an unknown key or a bad value."""


class DatasetError(ALError):
    """A dataset cannot be read or does not follow the data contract."""


class WorkspaceError(ALError):
    """A workspace is missing, not initialised, or in a state the command cannot work from."""


class LabelValidationError(ALError):
    """Returned labels failed validation; ``problems`` holds one message per offending line."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(
            f"{source}: {len(problems)} problem(s), nothing was written:\n{shown}{more}\n"
            "Fix these lines and ingest the file again, or pass --partial to take only the valid lines."
        )


class UnknownStrategyError(ALError, KeyError):
    """An acquisition strategy name is not registered."""

    def __init__(self, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        self.name = name
        self.valid = valid
        super().__init__(
            f"unknown acquisition strategy '{name}'.{hint} Valid names: {', '.join(valid)}"
            " (any of them can be wrapped as 'ceal+NAME')."
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CampaignStoppedError(WorkspaceError):
    """The campaign's stopping rule (acquisition.stop) has fired; ``alp continue`` goes on."""


class ShapeError(ALError, ValueError):
    """A tensor handed to an acquisition function has the wrong shape."""


def did_you_mean(value: str, valid: Iterable[str]) -> str:
    """Return ' Did you mean X?' for the closest valid value, or ''."""
    close = difflib.get_close_matches(str(value), list(valid), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""
