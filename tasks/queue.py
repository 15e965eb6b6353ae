"""The labeling queue: export a round's batch, and the simulated annotator's answers.

Folder backend: ``queue/round-NNN/batch.jsonl`` and ``label-studio.json`` (importable by Label
Studio with ``queue/label-config.xml``). Files are written atomically; an export that exists
already with the same content is left as it is (re-running a round never duplicates a batch).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from al_core.errors import WorkspaceError
from al_core.workspace import Workspace, atomic_write_text, round_name

FROM_NAME, TO_NAME = "label", "sample"


def batch_records(
    r: int,
    strategy: str,
    ids: np.ndarray,
    scores: np.ndarray,
    probs: np.ndarray | None,
    classes: list[str],
    model_version: str | None,
    top_k: int,
    features: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One record per selected sample, rank 1 first (DESIGN §4 queue export)."""
    out = []
    for rank, (sid, score) in enumerate(zip(ids, scores, strict=True), start=1):
        rec: dict[str, Any] = {
            "sample_id": str(sid),
            "round": r,
            "strategy": strategy,
            "score": float(score),
            "rank": rank,
            "model_version": model_version,
            "predictions": {},
        }
        if probs is not None:
            p = probs[rank - 1]
            top = np.argsort(-p, kind="stable")[:top_k]
            rec["predictions"] = {classes[c]: round(float(p[c]), 6) for c in top}
        if features is not None:
            rec["features"] = [round(float(v), 6) for v in features[rank - 1]]
        out.append(rec)
    return out


def label_studio_tasks(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same batch as Label Studio tasks: ``data`` (sample and id) and ``predictions``."""
    tasks = []
    for rec in records:
        data = {"sample_id": rec["sample_id"], "round": rec["round"], "rank": rec["rank"]}
        for key in ("uri", "features"):
            if key in rec:
                data[key] = rec[key]
        task: dict[str, Any] = {"data": data, "predictions": []}
        if rec["predictions"]:
            best = next(iter(rec["predictions"]))
            task["predictions"].append(
                {
                    "model_version": rec["model_version"] or "cold-start",
                    "score": rec["score"],
                    "result": [
                        {"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [best]}}
                    ],
                }
            )
        tasks.append(task)
    return tasks


def label_config(classes: list[str]) -> str:
    """A Label Studio labeling config matching the exported tasks."""
    choices = "\n".join(f'    <Choice value="{escape(c, quote=True)}"/>' for c in classes)
    return (
        "<View>\n"
        f'  <Header value="Sample $sample_id (round $round, rank $rank)"/>\n'
        f'  <Text name="{TO_NAME}" value="$sample_id"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


def export_batch(ws: Workspace, r: int, records: list[dict[str, Any]], classes: list[str]) -> dict[str, str]:
    """Write ``queue/round-NNN/{batch.jsonl,label-studio.json}``; refuse to overwrite a different batch."""
    folder = ws.queue_dir / round_name(r)
    batch_text = "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in records)
    batch_path, ls_path = folder / "batch.jsonl", folder / "label-studio.json"
    if batch_path.exists():
        old_ids = [json.loads(line)["sample_id"] for line in batch_path.read_text().splitlines() if line.strip()]
        if old_ids != [rec["sample_id"] for rec in records]:
            raise WorkspaceError(
                f"{batch_path} already holds a different batch for {round_name(r)}; a round is exported once. "
                "Run the next round instead."
            )
    # label-studio.json first: batch.jsonl is what marks the round as exported.
    atomic_write_text(ls_path, json.dumps(label_studio_tasks(records), indent=1) + "\n")
    atomic_write_text(batch_path, batch_text)
    config = ws.queue_dir / "label-config.xml"
    if not config.exists():
        atomic_write_text(config, label_config(classes))
    return {"batch": str(batch_path), "label_studio": str(ls_path)}


def simulate_annotator(ws: Workspace, r: int, annotator: str = "oracle") -> str:
    """Answer round ``r``'s batch from the held-apart ground truth, as a human would: a JSONL file.

    This is the only code that reads ``oracle/truth.parquet``.
    """
    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    classes = ws.classes
    lines = []
    for rec in ws.batch(r):
        sid = rec["sample_id"]
        if sid not in truth.index:
            raise WorkspaceError(f"the simulated annotator has no ground truth for '{sid}'")
        lines.append(json.dumps({"sample_id": sid, "label": classes[int(truth[sid])], "annotator": annotator}))
    path = ws.queue_dir / round_name(r) / "labels.jsonl"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return str(path)


def truth_labels(ws: Workspace, ids: np.ndarray) -> np.ndarray:
    """Ground-truth class indices for ``ids`` (simulation-only reporting, e.g. wrong pseudo-labels)."""
    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    return truth.reindex(ids).to_numpy()
