"""Returned labels: parse (JSON Lines, CSV, Label Studio JSON export) and validate.

The whole file is validated before anything is written: unknown ids, ids never queued,
labels outside the class set, conflicting duplicates and malformed lines each get one
message naming the line and the fix (DESIGN §4).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from al_core.errors import LabelValidationError

LABELED_COLUMNS = ["sample_id", "label", "round", "source", "annotator", "labeled_at"]


@dataclass(frozen=True)
class ReturnedLabel:
    """One line of a returned-labels file, as read (not yet validated against the workspace)."""

    line: int
    sample_id: str
    label: str
    annotator: str | None = None
    labeled_at: str | None = None


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def parse_label_file(name: str, data: bytes) -> tuple[list[ReturnedLabel], list[str]]:
    """Read returned labels from ``data`` (format by ``name``'s suffix); return (labels, problems)."""
    suffix = Path(name).suffix.lower()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [f"{name}: not UTF-8 text; export the labels as UTF-8 JSON Lines, CSV or Label Studio JSON"]
    if suffix in (".jsonl", ".ndjson"):
        return _parse_jsonl(text)
    if suffix == ".csv":
        return _parse_csv(text)
    if suffix == ".json":
        return _parse_label_studio(text)
    return [], [
        f"{name}: unknown file type '{suffix}'; use .jsonl (JSON Lines), .csv (sample_id,label) "
        "or .json (a Label Studio JSON export)"
    ]


def _record(line: int, obj: dict[str, Any], problems: list[str]) -> ReturnedLabel | None:
    sid, label = _as_text(obj.get("sample_id")), _as_text(obj.get("label"))
    if sid is None:
        problems.append(f"line {line}: no 'sample_id'; every line needs sample_id and label")
        return None
    if label is None:
        problems.append(f"line {line}: sample '{sid}' has no 'label'; give the class name or index")
        return None
    return ReturnedLabel(line, sid, label, _as_text(obj.get("annotator")), _as_text(obj.get("labeled_at")))


def _parse_jsonl(text: str) -> tuple[list[ReturnedLabel], list[str]]:
    out, problems = [], []
    for i, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(f"line {i}: not valid JSON ({exc.msg}); each line must be one JSON object")
            continue
        if not isinstance(obj, dict):
            problems.append(f'line {i}: expected a JSON object like {{"sample_id": ..., "label": ...}}')
            continue
        rec = _record(i, obj, problems)
        if rec:
            out.append(rec)
    return out, problems


def _parse_csv(text: str) -> tuple[list[ReturnedLabel], list[str]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if "sample_id" not in header or "label" not in header:
        return [], [f"line 1: the CSV header must contain sample_id and label, got {header}"]
    out, problems = [], []
    for row in reader:
        line = reader.line_num
        if None in row:  # more cells than header columns
            problems.append(f"line {line}: {len(header) + len(row[None])} cells but the header has {len(header)}")
            continue
        rec = _record(line, row, problems)
        if rec:
            out.append(rec)
    return out, problems


def _parse_label_studio(text: str) -> tuple[list[ReturnedLabel], list[str]]:
    """A Label Studio JSON export: a list of tasks with ``data.sample_id`` and ``annotations``."""
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [f"line {exc.lineno}: not valid JSON ({exc.msg}); expected a Label Studio JSON export"]
    if not isinstance(tasks, list):
        return [], ["line 1: a Label Studio JSON export is a list of tasks; got a single object"]
    out, problems = [], []
    for i, task in enumerate(tasks, start=1):
        rec = _label_studio_task(i, task, problems)
        if rec is not None:
            out.append(rec)
    return out, problems


def _annotation_choice(ann: dict[str, Any]) -> list[Any]:
    result = ann.get("result")
    return [
        c
        for r in (result if isinstance(result, list) else [])
        if isinstance(r, dict) and isinstance(r.get("value"), dict)
        for c in (r["value"].get("choices") if isinstance(r["value"].get("choices"), list) else [])
    ]


def _annotator(ann: dict[str, Any]) -> str | None:
    who = ann.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or who.get("id")
    return _as_text(who)


def _label_studio_task(i: int, task: Any, problems: list[str]) -> ReturnedLabel | None:
    """One task of a Label Studio export → its label, or None (not annotated, or a problem recorded).

    Several annotations of one task must agree (cancelled/skipped ones are ignored); an updated
    annotation is one annotation, its latest result.
    """
    where = f"task {i}"
    if not isinstance(task, dict):
        problems.append(f"{where}: expected a task object with data and annotations, got {type(task).__name__}")
        return None
    data = task.get("data")
    if not isinstance(data, dict):
        problems.append(f"{where}: 'data' must be an object holding sample_id, got {type(data).__name__}")
        return None
    sid = _as_text(data.get("sample_id"))
    if sid is None:
        problems.append(f"{where}: no data.sample_id; export the tasks alp created (they carry sample_id)")
        return None
    raw = task.get("annotations") or []
    if not isinstance(raw, list) or not all(isinstance(a, dict) for a in raw):
        problems.append(f"{where} (sample '{sid}'): 'annotations' must be a list of annotation objects")
        return None
    anns = [a for a in raw if not a.get("was_cancelled")]
    if not anns:
        return None  # not annotated yet (or skipped): nothing returned for this sample
    chosen = []
    for ann in anns:
        choices = _annotation_choice(ann)
        if len(choices) != 1 or _as_text(choices[0]) is None:
            problems.append(f"{where} (sample '{sid}'): expected exactly one choice in the annotation, got {choices}")
            return None
        chosen.append((str(choices[0]), ann))
    labels = sorted({c for c, _ in chosen})
    if len(labels) > 1:
        who = ", ".join(f"{c} by {_annotator(a) or 'unknown'}" for c, a in chosen)
        problems.append(
            f"{where} (sample '{sid}'): its annotations disagree ({who}); settle on one in Label Studio "
            "(delete or correct the others) and export again"
        )
        return None
    latest = max(anns, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
    return ReturnedLabel(i, sid, labels[0], _annotator(latest), _as_text(latest.get("updated_at")))


def validate_labels(
    source: str,
    records: list[ReturnedLabel],
    parse_problems: list[str],
    classes: list[str],
    label_format: Literal["name", "index"],
    pool_ids: set[str],
    queued: dict[str, int],
    labeled: dict[str, str],
    partial: bool = False,
) -> tuple[pd.DataFrame, list[str]]:
    """Check returned labels against the workspace; return (new labeled rows, rejected-line messages).

    ``queued`` maps a sample id to the round that queued it; ``labeled`` maps already-labeled ids to
    their class name. Lines equal to what is already stored are accepted and change nothing.
    Raises :class:`LabelValidationError` on any problem unless ``partial``.
    """
    problems = list(parse_problems)
    by_id: dict[str, list[ReturnedLabel]] = {}
    for rec in records:
        by_id.setdefault(rec.sample_id, []).append(rec)
    rows = []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for sid, recs in by_id.items():
        names: list[str] = []
        bad = False
        for rec in recs:
            name = _class_name(rec.label, classes, label_format)
            if name is None:
                shown = ", ".join(classes[:20]) if label_format == "name" else f"0..{len(classes) - 1}"
                problems.append(f"line {rec.line}: label '{rec.label}' of '{sid}' is not a class; valid: {shown}")
                bad = True
            else:
                names.append(name)
        if sid not in pool_ids:
            problems.append(f"line {recs[0].line}: unknown sample_id '{sid}' (not in the pool); check the id")
            continue
        if sid not in queued:
            problems.append(
                f"line {recs[0].line}: sample '{sid}' was never queued for labeling; only label exported batches"
            )
            continue
        if bad:
            continue
        if len(set(names)) > 1:
            lines = ", ".join(str(r.line) for r in recs)
            problems.append(f"lines {lines}: conflicting labels {sorted(set(names))} for '{sid}'; keep one")
            continue
        if sid in labeled:
            if labeled[sid] != names[0]:
                problems.append(
                    f"line {recs[0].line}: '{sid}' is already labeled '{labeled[sid]}', this file says "
                    f"'{names[0]}'; relabeling is not supported"
                )
            continue  # identical to what is stored: nothing to do
        rec = recs[0]
        rows.append(
            {
                "sample_id": sid,
                "label": names[0],
                "round": queued[sid],
                "source": "human",
                "annotator": rec.annotator or "unknown",
                "labeled_at": rec.labeled_at or now,
            }
        )
    if problems and not partial:
        raise LabelValidationError(source, problems)
    return pd.DataFrame(rows, columns=LABELED_COLUMNS), problems


def _class_name(label: str, classes: list[str], label_format: str) -> str | None:
    if label_format == "name":
        return label if label in classes else None
    try:
        idx = int(label)
    except ValueError:
        return None
    return classes[idx] if 0 <= idx < len(classes) else None


def empty_labeled() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "round" else "str") for c in LABELED_COLUMNS})
