"""`alp stack status` and `alp stack env` on the session's running stack."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flows.cli import app


def test_status_and_env(stack):
    runner = CliRunner()
    res = runner.invoke(app, ["stack", "status", "--state-dir", str(stack.state_dir), "--json"])
    assert res.exit_code == 0, res.output
    status = json.loads(res.output)
    assert set(status) == {"postgres", "s3", "prefect", "mlflow"}
    assert all(s["healthy"] and s["pid"] for s in status.values())
    assert all(s["url"].startswith(("http://127.0.0.1:", "postgresql://127.0.0.1:")) for s in status.values())
    env = runner.invoke(app, ["stack", "env", "--state-dir", str(stack.state_dir)]).output
    assert f"export PREFECT_API_URL={stack.url('prefect')}\n" in env
    assert f"export MLFLOW_TRACKING_URI={stack.url('mlflow')}\n" in env
    assert f"export AWS_ENDPOINT_URL={stack.url('s3')}\n" in env
    assert stack.password_path.read_text().strip() not in env  # the database password stays in the state dir
