"""Ingest through the real CLI and flow: every kind of bad file is refused with the labeled set
untouched; good files land once; a crash mid-ingest never leaves a half-written labeled set."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
from typer.testing import CliRunner

from al_core.workspace import Workspace
from flows.cli import app
from tasks.versioning import dir_hash
from tests.flows.conftest import copy_workspace, exported_template

pytestmark = pytest.mark.e2e
runner = CliRunner()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A workspace whose cold-start batch (30 samples) is exported and waiting for labels."""
    return exported_template(tmp_path_factory, "ws")


@pytest.fixture
def ws(template, tmp_path):
    return copy_workspace(template, tmp_path)


def head(ws):
    return subprocess.run(["git", "-C", str(ws.root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout


def truth(ws):
    t = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    return {sid: ws.classes[int(t[sid])] for sid in (row["sample_id"] for row in ws.batch(0))}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def bad_files(ws, tmp_path):
    ids = list(truth(ws))
    good = [{"sample_id": s, "label": lab} for s, lab in truth(ws).items()]
    unqueued = next(s for s in ws.pool()[0] if s not in set(ids))
    return {
        "unknown id": (
            write_jsonl(tmp_path / "u.jsonl", [*good[:3], {"sample_id": "nope-1", "label": "1"}]),
            "unknown sample_id 'nope-1'",
        ),
        "never queued": (write_jsonl(tmp_path / "q.jsonl", [{"sample_id": unqueued, "label": "1"}]), "never queued"),
        "bad class": (write_jsonl(tmp_path / "c.jsonl", [{"sample_id": ids[0], "label": "eleven"}]), "not a class"),
        "conflict": (
            write_jsonl(
                tmp_path / "d.jsonl", [{"sample_id": ids[0], "label": "1"}, {"sample_id": ids[0], "label": "2"}]
            ),
            "conflicting",
        ),
        "malformed": ((tmp_path / "m.jsonl"), "not valid JSON"),
        "bad csv": ((tmp_path / "b.csv"), "header must contain"),
    }


def test_each_bad_file_is_refused_and_nothing_changes(ws, tmp_path):
    files = bad_files(ws, tmp_path)
    files["malformed"][0].write_text(json.dumps({"sample_id": next(iter(truth(ws))), "label": "1"}) + "\n{oops\n")
    files["bad csv"][0].write_text("id;label\nx;1\n")
    before = (dir_hash(ws.labeled_dir), head(ws), ws.ledger())
    for kind, (path, needle) in files.items():
        res = runner.invoke(app, ["ingest", str(ws.root), str(path)])
        assert res.exit_code == 2, (kind, res.output)
        assert needle in res.output, (kind, res.output)
        assert (dir_hash(ws.labeled_dir), head(ws), ws.ledger()) == before, kind
    assert ws.labeled_set().empty


def test_good_file_lands_once_and_reingest_changes_nothing(ws, tmp_path):
    labels = write_jsonl(tmp_path / "labels.jsonl", [{"sample_id": s, "label": lab} for s, lab in truth(ws).items()])
    res = runner.invoke(app, ["ingest", str(ws.root), str(labels)])
    assert res.exit_code == 0, res.output
    assert "30 new label(s)" in res.output
    after = (dir_hash(ws.labeled_dir), head(ws))
    assert len(ws.labeled_set()) == 30 and ws.pending() == {}
    res = runner.invoke(app, ["ingest", str(ws.root), str(labels)])
    assert res.exit_code == 0 and "already ingested" in res.output
    assert (dir_hash(ws.labeled_dir), head(ws)) == after
    # the same labels in another file (other bytes) are accepted as no-ops
    csv = tmp_path / "again.csv"
    csv.write_text("sample_id,label\n" + "".join(f"{s},{lab}\n" for s, lab in truth(ws).items()))
    res = runner.invoke(app, ["ingest", str(ws.root), str(csv)])
    assert res.exit_code == 0 and "0 new label(s)" in res.output
    assert dir_hash(ws.labeled_dir) == after[0]


def test_partial_takes_valid_lines_and_writes_rejects(ws, tmp_path):
    rows = [{"sample_id": s, "label": lab} for s, lab in list(truth(ws).items())[:5]]
    path = write_jsonl(tmp_path / "p.jsonl", [*rows, {"sample_id": "nope", "label": "1"}])
    res = runner.invoke(app, ["ingest", str(ws.root), str(path), "--partial"])
    assert res.exit_code == 0, res.output
    assert len(ws.labeled_set()) == 5
    rejects = (tmp_path / "p.jsonl.rejects.txt").read_text()
    assert "line 6" in rejects and "nope" in rejects


def test_label_studio_export_ingests(ws, tmp_path):
    tasks = json.loads((ws.queue_dir / "round-000" / "label-studio.json").read_text())
    t = truth(ws)
    for task in tasks[:4]:
        task["annotations"] = [
            {
                "result": [
                    {
                        "from_name": "label",
                        "to_name": "sample",
                        "type": "choices",
                        "value": {"choices": [t[task["data"]["sample_id"]]]},
                    }
                ],
                "completed_by": {"email": "ann@example.org"},
            }
        ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    res = runner.invoke(app, ["ingest", str(ws.root), str(path)])
    assert res.exit_code == 0, res.output
    labeled = ws.labeled_set()
    assert len(labeled) == 4 and set(labeled["annotator"]) == {"ann@example.org"}


@pytest.mark.parametrize("fail_at", [0, 1, 2])
def test_crash_mid_ingest_leaves_before_or_after(ws, tmp_path, monkeypatch, fail_at):
    """An exception before the journal (0) or at the n-th rename of the change (the SIGKILL version of this
    runs real processes: tests/flows/test_recovery.py)."""
    import al_core.workspace as workspace_mod
    from tasks.ingest import ingest_file

    labels = write_jsonl(tmp_path / "l.jsonl", [{"sample_id": s, "label": lab} for s, lab in truth(ws).items()])
    before = dir_hash(ws.labeled_dir)
    real_replace, calls = workspace_mod.os.replace, {"n": 0}

    def dying_replace(src, dst):
        if fail_at == 0 and str(dst).endswith("ingest-journal.json"):
            raise KeyboardInterrupt("simulated crash")
        if str(src).endswith(".pending"):
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise KeyboardInterrupt("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(workspace_mod.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        ingest_file(ws, labels)
    monkeypatch.setattr(workspace_mod.os, "replace", real_replace)
    fresh = Workspace(ws.root)
    if fail_at == 0:  # died before the change was decided: the labeled set is as it was
        assert fresh.labeled_set().empty and dir_hash(ws.labeled_dir) == before and fresh.ledger() == []
        assert not list(ws.labeled_dir.glob(".*.pending"))  # undecided leftovers are cleaned up
        assert ingest_file(fresh, labels).added == 30
    else:  # decided: a reader sees it complete, never half of it, and changes nothing on disk
        assert len(fresh.labeled_set()) == 30 and len(fresh.ledger()) == 1
        assert (ws.alp_dir / "ingest-journal.json").exists()  # left for a writer to finish
        with fresh.writer("test"):  # the next writer rolls the change forward
            pass
        assert dir_hash(ws.labeled_dir) != before and not (ws.alp_dir / "ingest-journal.json").exists()
        assert len(fresh.labeled_set()) == 30 and len(fresh.ledger()) == 1
        assert ingest_file(fresh, labels).already_ingested
