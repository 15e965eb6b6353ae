"""The labeling queue: export a round's batch, and the simulated annotator's answers.

Folder backend: ``queue/round-NNN/batch.jsonl`` and ``label-studio.json`` (importable by Label
Studio with ``queue/label-config.xml``). Files are written atomically; an export that exists
already with the same content is left as it is (re-running a round never duplicates a batch).

S3 backend (``queue.backend: s3``, ``queue.path: s3://bucket/prefix``): the same files go to
``s3://bucket/prefix/round-NNN/`` first, then to the workspace's ``queue/`` folder (the local copy the
round flow reads); an export interrupted by an S3 failure leaves no local ``batch.jsonl``, so the round
is run again, not skipped. Returned labels are read from S3 URLs (``s3://bucket/prefix/inbox/`` by
convention), downloaded into ``queue/inbox/`` and ingested like local files.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from al_core.data import read_uris
from al_core.errors import WorkspaceError
from al_core.workspace import Workspace, atomic_write_text, round_name
from tasks import s3

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
    uris: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One record per selected sample, rank 1 first (DESIGN §4 queue export); ``uris`` [B] (a uri
    pool's files) and ``features`` [B, F] go into the records when given."""
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
        if uris is not None:
            rec["uri"] = str(uris[rank - 1])
        if features is not None:
            rec["features"] = [round(float(v), 6) for v in features[rank - 1]]
        out.append(rec)
    return out


def sample_payload(ws: Workspace, X_pool: np.ndarray, pool_idx: np.ndarray) -> dict[str, np.ndarray]:
    """What a batch line carries of its sample (``batch_records`` keywords): the ``uri`` of a uri pool
    (images), and the feature vector only with ``queue.features: true``."""
    out: dict[str, np.ndarray] = {}
    uris = read_uris(ws.pool_path)
    if uris is not None:
        out["uris"] = uris[pool_idx]
    if ws.params.queue.features:
        out["features"] = X_pool[pool_idx]
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


def _check_same_batch(existing: str | None, records: list[dict[str, Any]], where: str, r: int) -> None:
    """An export that exists already must hold the same samples: a round is exported once."""
    if existing is None:
        return
    old_ids = [json.loads(line)["sample_id"] for line in existing.splitlines() if line.strip()]
    if old_ids != [rec["sample_id"] for rec in records]:
        raise WorkspaceError(
            f"{where} already holds a different batch for {round_name(r)}; a round is exported once. "
            "Run the next round instead."
        )


def queue_url(ws: Workspace) -> str:
    """The S3 prefix of an S3-backed queue (``queue.path``)."""
    return s3.normalise_url(ws.params.queue.path)


def _export_s3(ws: Workspace, r: int, records: list[dict[str, Any]], files: dict[str, str]) -> dict[str, str]:
    """Upload the round's files; ``batch.jsonl`` last, as it marks the round exported."""
    folder = s3.join(queue_url(ws), round_name(r))
    batch_url = s3.join(folder, "batch.jsonl")
    old = s3.get_bytes(batch_url)
    _check_same_batch(old.decode("utf-8") if old is not None else None, records, batch_url, r)
    s3.put_bytes(s3.join(queue_url(ws), "label-config.xml"), files["label-config.xml"].encode(), "application/xml")
    ls_url = s3.join(folder, "label-studio.json")
    s3.put_bytes(ls_url, files["label-studio.json"].encode(), "application/json")
    if old is None:
        s3.put_bytes(batch_url, files["batch.jsonl"].encode(), "application/jsonl")
    return {"batch_url": batch_url, "label_studio_url": ls_url}


def export_batch(ws: Workspace, r: int, records: list[dict[str, Any]], classes: list[str]) -> dict[str, str]:
    """Write ``queue/round-NNN/{batch.jsonl,label-studio.json}``; refuse to overwrite a different batch.

    With the S3 backend the files go to S3 first; the local copy follows once S3 holds them.
    """
    folder = ws.queue_dir / round_name(r)
    batch_text = "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in records)
    batch_path, ls_path = folder / "batch.jsonl", folder / "label-studio.json"
    _check_same_batch(batch_path.read_text() if batch_path.exists() else None, records, str(batch_path), r)
    ls_text = json.dumps(label_studio_tasks(records), indent=1) + "\n"
    out: dict[str, str] = {}
    if ws.params.queue.backend == "s3":
        files = {"batch.jsonl": batch_text, "label-studio.json": ls_text, "label-config.xml": label_config(classes)}
        out = _export_s3(ws, r, records, files)
    # label-studio.json first: batch.jsonl is what marks the round as exported.
    atomic_write_text(ls_path, ls_text)
    atomic_write_text(batch_path, batch_text)
    config = ws.queue_dir / "label-config.xml"
    if not config.exists():
        atomic_write_text(config, label_config(classes))
    return {"batch": str(batch_path), "label_studio": str(ls_path), **out}


LABEL_SUFFIXES = (".jsonl", ".csv", ".json")


def fetch_label_files(ws: Workspace, files: list[str]) -> list[str]:
    """Local paths for returned-label files: local paths as they are; S3 URLs downloaded into ``queue/inbox/``.

    An S3 URL is one object, or a prefix (e.g. ``s3://bucket/prefix/inbox/``): then every label file
    (.jsonl, .csv, .json) under it. Files ingested before are skipped by ingest itself (ledger of digests).
    """
    out: list[str] = []
    inbox = ws.queue_dir / "inbox"
    for f in files:
        if not s3.is_s3_url(f):
            out.append(f)
            continue
        url = s3.normalise_url(f)
        if s3.exists(url):
            out.append(str(s3.download(url, inbox / Path(s3.split_url(url)[1]).name)))
            continue
        prefix = url.rstrip("/")
        found = [u for u in s3.list_urls(prefix) if u.endswith(LABEL_SUFFIXES)]
        if not found:
            raise s3.S3Error(
                f"no label files (.jsonl, .csv, .json) at {url}: check the URL and that the upload finished"
            )
        for u in found:
            rel = u.removeprefix(prefix + "/").replace("/", "__")
            out.append(str(s3.download(u, inbox / rel)))
    return out


def simulate_annotator(ws: Workspace, r: int, annotator: str = "oracle") -> str:
    """Answer round ``r``'s batch from the held-apart ground truth, as a human would: a JSONL file
    (S3 backend: an object in the queue's ``inbox/``), whose path or URL is returned.

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
    text = "\n".join(lines) + "\n"
    if ws.params.queue.backend == "s3":  # annotators return labels to the queue's inbox
        url = s3.join(queue_url(ws), "inbox", f"{round_name(r)}-{annotator}.jsonl")
        s3.put_bytes(url, text.encode(), "application/jsonl")
        return url
    path = ws.queue_dir / round_name(r) / "labels.jsonl"
    atomic_write_text(path, text)
    return str(path)


def truth_labels(ws: Workspace, ids: np.ndarray) -> np.ndarray:
    """Ground-truth class indices for ``ids`` (simulation-only reporting, e.g. wrong pseudo-labels)."""
    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    return truth.reindex(ids).to_numpy()
