"""Returned labels: parse (JSON Lines, CSV, Label Studio JSON export) and validate.

The whole file is validated before anything is written: unknown ids, ids never queued,
labels outside the class set, conflicting duplicates and malformed lines each get one
message naming the line and the fix (DESIGN §4).

Corrections: a label from Label Studio (a webhook call or an export) whose annotation was updated
after the stored label replaces it: the latest annotation wins (the ingest keeps the replaced row
in ``data/labeled/history.parquet``). Any other change of a stored label is refused.
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
#: a replaced label's row in ``data/labeled/history.parquet``: LABELED_COLUMNS + when and by what
HISTORY_COLUMNS = ["replaced_at", "replaced_by", "replaced_by_annotator", "ingest_digest"]


@dataclass(frozen=True)
class ReturnedLabel:
    """One line of a returned-labels file, as read (not yet validated against the workspace)."""

    line: int
    sample_id: str
    label: str
    annotator: str | None = None
    labeled_at: str | None = None
    #: from Label Studio: replaces a stored label when its annotation is newer (the latest wins)
    correction: bool = False


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
    """The annotator's e-mail or username; a bare Label Studio user id as ``ls-user-<id>`` (resolved to
    a name through the Label Studio API by the ingest, when it can reach it)."""
    who = ann.get("completed_by")
    if isinstance(who, dict):
        name = _as_text(who.get("email")) or _as_text(who.get("username"))
        who = name if name else who.get("id")
        if name:
            return name
    text = _as_text(who)
    if text is not None and text.isdigit():
        return f"ls-user-{text}"
    return text


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
    when = _as_text(latest.get("updated_at")) or _as_text(latest.get("created_at"))
    return ReturnedLabel(i, sid, labels[0], _annotator(latest), when, correction=True)


def _instant(text: str | None) -> datetime | None:
    """An ISO 8601 time (``Z`` or an offset; naive = UTC), or None when absent or unreadable."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


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
    labeled_at: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Check returned labels against the workspace; return (new labeled rows, rejected-line messages).

    ``queued`` maps a sample id to the round that queued it; ``labeled`` maps already-labeled ids to
    their class name and ``labeled_at`` to when they were labeled. Lines equal to what is already
    stored are accepted and change nothing. A different label for a stored id is a correction (its
    row is returned with the new rows: the caller replaces the stored one) only from Label Studio
    with an annotation newer than the stored label; otherwise it is refused.
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
        rec = recs[0]
        if sid in labeled:
            if labeled[sid] != names[0]:
                problem = _correction_problem(rec, labeled[sid], names[0], (labeled_at or {}).get(sid))
                if problem is None:  # the latest annotation wins
                    rows.append(_row(rec, names[0], queued[sid], now))
                else:
                    problems.append(problem)
            continue  # identical to what is stored: nothing to do
        rows.append(_row(rec, names[0], queued[sid], now))
    if problems and not partial:
        raise LabelValidationError(source, problems)
    return pd.DataFrame(rows, columns=LABELED_COLUMNS), problems


def _row(rec: ReturnedLabel, label: str, r: int, now: str) -> dict[str, Any]:
    return {
        "sample_id": rec.sample_id,
        "label": label,
        "round": r,
        "source": "human",
        "annotator": rec.annotator or "unknown",
        "labeled_at": rec.labeled_at or now,
    }


def _correction_problem(rec: ReturnedLabel, stored: str, new: str, stored_at: str | None) -> str | None:
    """Why ``rec`` may not replace the stored label, or None when it is a correction (the latest wins)."""
    head = f"line {rec.line}: '{rec.sample_id}' is already labeled '{stored}', this file says '{new}'"
    if not rec.correction:
        return (
            f"{head}; relabeling is not supported outside Label Studio (correct the annotation there: "
            "the latest wins), not from JSON Lines or CSV"
        )
    ours, theirs = _instant(rec.labeled_at), _instant(stored_at)
    if ours is None:
        return f"{head}; the annotation has no readable updated_at, so it cannot be told newer: export again"
    if theirs is not None and ours <= theirs:
        return (
            f"{head}; the stored label ({stored_at}) is newer than this annotation ({rec.labeled_at}): "
            "this export is out of date, export again from Label Studio"
        )
    return None


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
