"""Which MLflow store a workspace logs to, when one process serves several workspaces."""

from al_core.workspace import Workspace
from tasks import tracking


def _ws(tmp_path, name, uri=None):
    root = tmp_path / name
    root.mkdir()
    (root / "params.yaml").write_text(f"tracking:\n  uri: {uri}\n" if uri else "{}\n")
    return Workspace(root)


def test_each_workspace_keeps_its_own_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a, b = _ws(tmp_path, "a"), _ws(tmp_path, "b")
    tracking._mlflow(a)  # mlflow exports the URI as $MLFLOW_TRACKING_URI
    assert tracking.tracking_uri(b) == f"sqlite:///{b.root / 'mlflow.db'}"
    tracking._mlflow(b)
    assert tracking.tracking_uri(a) == f"sqlite:///{a.root / 'mlflow.db'}"


def test_the_users_variable_and_params_still_win(tmp_path, monkeypatch):
    user = f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user)
    a, b = _ws(tmp_path, "a"), _ws(tmp_path, "b")
    tracking._mlflow(a)
    assert tracking.tracking_uri(a) == tracking.tracking_uri(b) == user
    explicit = _ws(tmp_path, "c", uri=f"sqlite:///{tmp_path / 'c.db'}")
    assert tracking.tracking_uri(explicit) == f"sqlite:///{tmp_path / 'c.db'}"
    tracking._mlflow(explicit)  # exports c.db as $MLFLOW_TRACKING_URI ...
    assert tracking.tracking_uri(b) == user  # ... yet a workspace without one still gets the user's
