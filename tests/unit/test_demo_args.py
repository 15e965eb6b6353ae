"""`python -m flows.demo` options: more seeds from the command line, the same protocol."""

from __future__ import annotations

import pytest

from flows import demo


def test_demo_runs_more_seeds_from_the_command_line():
    assert demo.parse_args([]) == {}
    assert demo.parse_args(["--seeds", "0", "1"]) == {"seeds": [0, 1]}
    with pytest.raises(SystemExit):
        demo.parse_args(["--seeds", "one"])
