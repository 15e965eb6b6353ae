"""The labeling queue: export a round's batch, and the simulated annotator's answers.

Folder backend: ``queue/round-NNN/batch.jsonl`` and ``label-studio.json`` (importable by Label
Studio with ``queue/label-config.xml``). Files are written atomically; an export that exists
already with the same content is left as it is (re-running a round never duplicates a batch).

What the annotator sees depends on the samples' shape (:func:`presentation`): images ([C, H, W]:
digits, mnist, image pools) as an ``<Image>`` — a PNG per sample in ``queue/round-NNN/images/``,
and the same PNG inline in the task (a ``data:`` URI, so Label Studio shows it with no storage
set up), or for an image pool its own file by URL (served by ``alp webhook`` or presigned on S3:
tasks/media.py, ``queue.label_studio.media``); series ([L] of mnist1d, [C, L] sensor windows) as a
``<TimeSeries>`` with one channel per signal; flat feature rows (tables) as a ``<Table>`` of
name: value. Each task carries the model's top class as a prediction (``score`` = its probability)
and the acquisition score, its name and the rank as data columns, so Label Studio's data manager
shows and sorts by them.

Where the batch goes and returned labels come from is the queue backend's business (``queue.backend``,
tasks/queues/: folder, s3, label-studio): the export writes the backend's copy first, then the
workspace's local copy, so an export interrupted by a backend failure leaves no local ``batch.jsonl``
and the round is run again, not skipped.
"""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from al_core.data import read_uris
from al_core.errors import ALError, WorkspaceError
from al_core.workspace import Workspace, atomic_write_bytes, atomic_write_text, round_name
from tasks import queues
from tasks.media import image_sources, to_pixels
from tasks.queues import ExportedBatch
from tasks.queues._base import check_same_batch

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


@dataclass(frozen=True)
class Presentation:
    """How Label Studio shows a sample: ``kind`` image | series | table, the sample's ``shape``
    (as the model sees it) and the names of its channels (series) or features (tables)."""

    kind: str
    shape: tuple[int, ...]
    names: tuple[str, ...] = ()

    @property
    def object_tag(self) -> str:
        return {"image": "Image", "series": "TimeSeries", "table": "Table"}[self.kind]


def presentation(dataset: str, shape: tuple[int, ...], names: list[str] | None = None) -> Presentation:
    """Images for [C, H, W] samples (C = 1 or 3), series for mnist1d and [C, L], tables otherwise."""
    shape = tuple(int(v) for v in shape)
    if len(shape) == 3 and shape[0] in (1, 3):
        return Presentation("image", shape)
    if len(shape) == 2 or (len(shape) == 1 and dataset == "mnist1d"):
        channels = shape[0] if len(shape) == 2 else 1
        return Presentation("series", shape, _channel_names(names, channels))
    n = int(np.prod(shape))
    return Presentation("table", (n,), tuple(names) if names and len(names) == n else tuple(f"f{i}" for i in range(n)))


def _channel_names(columns: list[str] | None, channels: int) -> tuple[str, ...]:
    """One name per channel: the common prefix of its channel-major columns (``acc_x_0`` → ``acc_x``)."""
    if channels == 1 and not columns:
        return ("signal",)
    if columns and len(columns) % channels == 0:
        block = len(columns) // channels
        prefixes = [re.sub(r"[_.-]?\d+$", "", columns[c * block]) for c in range(channels)]
        if all(prefixes) and len(set(prefixes)) == channels:
            return tuple(prefixes)
    return tuple(f"ch{c}" for c in range(channels))


def workspace_presentation(ws: Workspace) -> Presentation:
    """The workspace's presentation, from its prepared meta and (tables) its feature column names."""
    meta = ws.meta()
    ds = ws.params.dataset
    names: list[str] | None = list(getattr(ds, "feature_columns", None) or []) or None
    if names is None and meta["dataset"] == "table" and getattr(ds, "path", None):
        try:
            from al_core.sources.table import feature_names  # the schema only: a pool of millions stays on disk

            names = feature_names(ds)
        except (OSError, ValueError, ALError):  # the table moved: generic names
            names = None
    return presentation(meta["dataset"], tuple(meta["input_shape"]), names)


def sample_png(row: np.ndarray, shape: tuple[int, ...], min_side: int = 112) -> bytes:
    """One image sample [C·H·W] (channel-major, values in [0, 1] or any range) as a PNG, scaled up
    without smoothing to at least ``min_side`` pixels so small images (8×8 digits) stay crisp."""
    from PIL import Image

    c, h, w = shape
    pixels = to_pixels(np.asarray(row).reshape(c, h, w), stretch=False)
    pil = Image.fromarray(pixels[0] if c == 1 else np.moveaxis(pixels, 0, -1), mode="L" if c == 1 else "RGB")
    factor = max(1, -(-min_side // max(1, min(h, w))))
    if factor > 1:
        pil = pil.resize((w * factor, h * factor), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def sample_data(pres: Presentation, row: np.ndarray) -> dict[str, Any]:
    """The task ``data`` fields that show one sample (images: see :func:`export_batch`)."""
    values = np.asarray(row, dtype=np.float64).reshape(-1)
    if pres.kind == "series":
        series = values.reshape(len(pres.names), -1)
        return {"series": {name: [round(float(v), 5) for v in ch] for name, ch in zip(pres.names, series, strict=True)}}
    if pres.kind == "table":
        return {"table": {name: round(float(v), 5) for name, v in zip(pres.names, values, strict=True)}}
    return {"image": "data:image/png;base64," + base64.b64encode(sample_png(values, pres.shape)).decode("ascii")}


def label_studio_tasks(
    records: list[dict[str, Any]],
    pres: Presentation | None = None,
    rows: np.ndarray | None = None,
    image_files: list[str] | None = None,
    image_urls: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The same batch as Label Studio tasks, rank order (the import order, which Label Studio's default
    sequential sampling follows): ``data`` (the sample as ``pres`` shows it, ``sample_id``, round, rank,
    acquisition name and score) and ``predictions`` (the model's top class; ``score`` its probability).
    ``image_urls``: where each image sample's own file is (tasks/media.py) instead of an inline PNG."""
    tasks = []
    for i, rec in enumerate(records):
        data: dict[str, Any] = {
            "sample_id": rec["sample_id"],
            "round": rec["round"],
            "rank": rec["rank"],
            "acquisition": rec["strategy"],
            "acquisition_score": round(float(rec["score"]), 6),
        }
        if rec["predictions"]:
            # the most probable class (batch.jsonl's predictions are written with sorted keys)
            best, p = max(rec["predictions"].items(), key=lambda kv: kv[1])
            data["model_guess"], data["model_probability"] = best, p
        if image_urls is not None:
            data["image"] = image_urls[i]
        elif pres is not None and rows is not None:
            data.update(sample_data(pres, rows[i]))
        if image_files is not None:
            data["image_file"] = image_files[i]
        for key in ("uri", "features"):
            if key in rec:
                data[key] = rec[key]
        task: dict[str, Any] = {"data": data, "predictions": []}
        if rec["predictions"]:
            task["predictions"].append(
                {
                    "model_version": rec["model_version"] or "cold-start",
                    "score": data["model_probability"],
                    "result": [
                        {"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [best]}}
                    ],
                }
            )
        tasks.append(task)
    return tasks


def label_config(classes: list[str], pres: Presentation | None = None) -> str:
    """A Label Studio labeling config matching the exported tasks: the sample as ``pres`` shows it
    (no ``pres``: its id as text), the model's guess and the acquisition score, then the choices."""
    choices = "\n".join(f'    <Choice value="{escape(c, quote=True)}"/>' for c in classes)
    if pres is None:
        sample = f'  <Text name="{TO_NAME}" value="$sample_id"/>\n'
    elif pres.kind == "image":
        # crisp pixels (no smoothing of 8×8 digits), small enough that the choices stay in view
        sample = (
            f'  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true" smoothing="false" '
            'maxWidth="360px"/>\n'
        )
    elif pres.kind == "series":
        channels = "".join(
            f'    <Channel column="{escape(n, quote=True)}" legend="{escape(n, quote=True)}"/>\n' for n in pres.names
        )
        sample = (  # the whole series in view (Label Studio's default shows its first quarter)
            f'  <TimeSeries name="{TO_NAME}" value="$series" valueType="json" overviewWidth="100%">\n'
            f"{channels}  </TimeSeries>\n"
        )
    else:
        sample = f'  <Table name="{TO_NAME}" value="$table"/>\n'
    return (
        "<View>\n"
        '  <Header value="Sample $sample_id (round $round, rank $rank; $acquisition score $acquisition_score)"/>\n'
        f"{sample}"
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true" required="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


def _sample_rows(ws: Workspace, records: list[dict[str, Any]]) -> np.ndarray:
    """The batch's feature rows [B, F] (decoded for uri pools), in record order."""
    from al_core.pool import open_pool, read_pool_ids  # only the row groups holding the batch are read

    return open_pool(ws.pool_path)[read_pool_ids(ws.pool_path).positions([rec["sample_id"] for rec in records])]


def export_batch(ws: Workspace, r: int, records: list[dict[str, Any]], classes: list[str]) -> dict[str, str]:
    """Export round ``r``: the queue backend's copy first, then the local one, ``queue/round-NNN/``
    (``batch.jsonl``, ``label-studio.json``, ``images/<sample_id>.png`` for image samples) and
    ``queue/label-config.xml``; refuse to overwrite a different batch (a round is exported once)."""
    folder = ws.queue_dir / round_name(r)
    batch_text = "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in records)
    batch_path, ls_path = folder / "batch.jsonl", folder / "label-studio.json"
    pres = workspace_presentation(ws)
    rows = _sample_rows(ws, records)
    image_files = image_urls = None
    if pres.kind == "image":
        image_files = [f"{round_name(r)}/images/{rec['sample_id']}.png" for rec in records]
        uris = [rec["uri"] for rec in records] if records and all(rec.get("uri") for rec in records) else None
        image_urls = image_sources(ws, [rec["sample_id"] for rec in records], uris).urls
    tasks = label_studio_tasks(records, pres, rows, image_files, image_urls)
    config_text = label_config(classes, pres)
    ls_text = json.dumps(tasks, indent=1) + "\n"
    batch = ExportedBatch(
        r,
        records,
        tasks,
        config_text,
        {
            "label-config.xml": config_text,
            f"{round_name(r)}/label-studio.json": ls_text,
            f"{round_name(r)}/batch.jsonl": batch_text,  # last: it marks the round exported
        },
    )
    check_same_batch(batch_path.read_text() if batch_path.exists() else None, batch, str(batch_path))
    out = queues.backend(ws).publish(batch)
    for rel, row in zip(image_files or [], rows, strict=False):  # the PNGs, for local-files serving or any viewer
        atomic_write_bytes(ws.queue_dir / rel, sample_png(row, pres.shape))
    # label-studio.json first: batch.jsonl is what marks the round as exported.
    atomic_write_text(ls_path, ls_text)
    atomic_write_text(batch_path, batch_text)
    config = ws.queue_dir / "label-config.xml"
    if not config.exists() or config.read_text() != config_text:
        atomic_write_text(config, config_text)
    return {"batch": str(batch_path), "label_studio": str(ls_path), **out}


def fetch_label_files(ws: Workspace, files: list[str]) -> list[str]:
    """Local paths for returned-label files: local paths as they are; URLs (``s3://bucket/key`` or a
    prefix such as ``s3://bucket/prefix/inbox/``: every label file under it) copied into ``queue/inbox/``.
    Files ingested before are skipped by ingest itself (ledger of digests)."""
    out: list[str] = []
    for f in files:
        if queues.is_url(f):
            out.extend(str(p) for p in queues.pull(ws, f))
        else:
            out.append(f)
    return out


def simulate_annotator(ws: Workspace, r: int, annotator: str = "oracle") -> list[str]:
    """Answer round ``r``'s batch from the held-apart ground truth, as a human would, through the queue
    backend (a JSONL file in the queue, an object in the S3 inbox, annotations in Label Studio); the
    files (paths or URLs) to ingest.

    This is the only code that reads ``oracle/truth.parquet``.
    """
    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    classes = ws.classes
    lines = []
    for rec in ws.batch(r):
        sid = rec["sample_id"]
        if sid not in truth.index:
            raise WorkspaceError(
                f"the simulated annotator has no ground truth for '{sid}': this pool is unlabeled, so a "
                f"person labels round {r}'s batch (queue/round-{r:03d}/) and `alp ingest` takes it in"
            )
        lines.append({"sample_id": sid, "label": classes[int(truth[sid])], "annotator": annotator})
    return queues.backend(ws).answer(r, lines)


def truth_labels(ws: Workspace, ids: np.ndarray) -> np.ndarray:
    """Ground-truth class indices for ``ids`` (simulation-only reporting, e.g. wrong pseudo-labels)."""
    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    return truth.reindex(ids).to_numpy()
