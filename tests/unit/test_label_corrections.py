"""Corrections: a newer Label Studio annotation replaces the stored label (the latest wins); an
older one, one without a time, or a JSON Lines/CSV line that differs is refused. Annotators are
named by e-mail or username, a bare Label Studio user id as ``ls-user-<id>``."""

from __future__ import annotations

import json

import pytest

from al_core.errors import LabelValidationError
from al_core.labels import parse_label_file, validate_labels

CLASSES = ["cat", "dog", "eel"]
POOL = {"a", "b", "c"}
QUEUED = {"a": 0, "b": 0, "c": 1}
STORED = {"a": "cat"}
STORED_AT = {"a": "2026-12-01T10:00:00+00:00"}


def ls_export(choice: str, updated_at: str | None, who=7):
    ann = {"id": 11, "result": [{"type": "choices", "value": {"choices": [choice]}}], "completed_by": who}
    if updated_at is not None:
        ann["updated_at"] = updated_at
    return json.dumps([{"id": 3, "data": {"sample_id": "a"}, "annotations": [ann]}]).encode()


def check(name: str, data: bytes, stored_at=STORED_AT):
    recs, probs = parse_label_file(name, data)
    return validate_labels(name, recs, probs, CLASSES, "name", POOL, QUEUED, STORED, labeled_at=stored_at)


def test_a_newer_label_studio_annotation_replaces_the_stored_label():
    df, problems = check("export.json", ls_export("dog", "2026-12-01T10:05:00.123456Z"))
    assert problems == [] and df.to_dict("records") == [
        {
            "sample_id": "a",
            "label": "dog",
            "round": 0,
            "source": "human",
            "annotator": "ls-user-7",
            "labeled_at": "2026-12-01T10:05:00.123456Z",
        }
    ]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (ls_export("dog", "2026-12-01T09:59:59Z"), "this export is out of date"),
        (ls_export("dog", "2026-12-01T10:00:00Z"), "this export is out of date"),
        (ls_export("dog", None), "no readable updated_at"),
        (ls_export("dog", "yesterday"), "no readable updated_at"),
    ],
)
def test_an_older_or_undated_label_studio_annotation_is_refused(data, needle):
    with pytest.raises(LabelValidationError, match=needle):
        check("export.json", data)


def test_a_changed_label_in_jsonl_or_csv_is_still_refused():
    line = json.dumps({"sample_id": "a", "label": "dog", "labeled_at": "2030-01-01T00:00:00Z"}) + "\n"
    with pytest.raises(LabelValidationError, match="relabeling is not supported outside Label Studio"):
        check("x.jsonl", line.encode())
    with pytest.raises(LabelValidationError, match="relabeling is not supported outside Label Studio"):
        check("x.csv", b"sample_id,label,labeled_at\na,dog,2030-01-01T00:00:00Z\n")


def test_the_same_label_again_is_a_no_op_and_new_samples_are_added():
    df, problems = check("export.json", ls_export("cat", "2026-12-01T10:05:00Z"))
    assert problems == [] and df.empty


def test_a_stored_label_without_a_time_is_corrected_by_any_dated_annotation():
    df, _ = check("export.json", ls_export("eel", "2026-01-01T00:00:00Z"), stored_at={})
    assert df["label"].tolist() == ["eel"]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (7, "ls-user-7"),
        ("7", "ls-user-7"),
        ({"id": 7, "email": "ana@example.org"}, "ana@example.org"),
        ({"id": 7, "username": "ana"}, "ana"),
        ({"id": 7}, "ls-user-7"),
        ("ana@example.org", "ana@example.org"),
    ],
)
def test_annotators_are_named_by_email_or_username_else_by_label_studio_id(who, expected):
    recs, _ = parse_label_file("export.json", ls_export("dog", "2026-12-02T00:00:00Z", who))
    assert recs[0].annotator == expected
