import json

import pytest

from al_core.errors import LabelValidationError
from al_core.labels import parse_label_file, validate_labels

CLASSES = ["cat", "dog", "eel"]
POOL = {"a", "b", "c", "d", "e"}
QUEUED = {"a": 0, "b": 0, "c": 1, "d": 1}


def check(name, text, labeled=None, partial=False, fmt="name"):
    recs, probs = parse_label_file(name, text.encode())
    return validate_labels(name, recs, probs, CLASSES, fmt, POOL, QUEUED, labeled or {}, partial=partial)


def test_jsonl_and_csv_and_label_studio_parse_to_the_same_rows():
    jl = '{"sample_id": "a", "label": "cat", "annotator": "ann"}\n{"sample_id": "c", "label": "eel"}\n'
    csv = "sample_id,label,annotator\na,cat,ann\nc,eel,\n"
    ls = json.dumps(
        [
            {
                "data": {"sample_id": "a"},
                "annotations": [{"result": [{"value": {"choices": ["cat"]}}], "completed_by": {"email": "ann"}}],
            },
            {"data": {"sample_id": "c"}, "annotations": [{"result": [{"value": {"choices": ["eel"]}}]}]},
            {"data": {"sample_id": "d"}, "annotations": []},
        ]
    )
    outs = [check("x.jsonl", jl)[0], check("x.csv", csv)[0], check("x.json", ls)[0]]
    for df in outs:
        assert df[["sample_id", "label", "round"]].values.tolist() == [["a", "cat", 0], ["c", "eel", 1]]
        assert df.loc[0, "annotator"] == "ann"


def test_index_labels():
    df, _ = check("x.jsonl", '{"sample_id": "a", "label": 2}\n', fmt="index")
    assert df["label"].tolist() == ["eel"]
    with pytest.raises(LabelValidationError, match=r"0\.\.2"):
        check("x.jsonl", '{"sample_id": "a", "label": 3}\n', fmt="index")


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("x.jsonl", '{"sample_id": "zz", "label": "cat"}\n', "unknown sample_id 'zz'"),
        ("x.jsonl", '{"sample_id": "e", "label": "cat"}\n', "never queued"),
        ("x.jsonl", '{"sample_id": "a", "label": "cow"}\n', "'cow' of 'a' is not a class"),
        ("x.jsonl", '{"sample_id": "a", "label": "cat"}\n{"sample_id": "a", "label": "dog"}\n', "conflicting"),
        ("x.jsonl", '{"sample_id": "a", "label": "cat"}\n{"sample_id": "b", "label": \n', "line 2: not valid JSON"),
        ("x.jsonl", '["a", "cat"]\n', "expected a JSON object"),
        ("x.jsonl", '{"label": "cat"}\n', "no 'sample_id'"),
        ("x.jsonl", '{"sample_id": "a"}\n', "has no 'label'"),
        ("x.csv", "id,label\na,cat\n", "header must contain sample_id and label"),
        ("x.csv", "sample_id,label\na,cat,extra\n", "line 2: 3 cells"),
        ("x.json", '{"data": {}}', "list of tasks"),
        ("x.json", '[{"data": {}, "annotations": []}]', "no data.sample_id"),
        ("x.txt", "a cat", "unknown file type"),
    ],
)
def test_each_bad_line_gets_a_message_naming_it(name, text, needle):
    with pytest.raises(LabelValidationError) as e:
        check(name, text)
    assert needle in str(e.value)
    assert "nothing was written" in str(e.value)


def test_relabeling_is_a_conflict_but_the_same_label_is_a_no_op():
    df, _ = check("x.jsonl", '{"sample_id": "a", "label": "cat"}\n', labeled={"a": "cat"})
    assert df.empty
    with pytest.raises(LabelValidationError, match="already labeled 'cat'"):
        check("x.jsonl", '{"sample_id": "a", "label": "dog"}\n', labeled={"a": "cat"})


def test_duplicate_identical_lines_collapse():
    df, _ = check("x.jsonl", '{"sample_id": "a", "label": "cat"}\n{"sample_id": "a", "label": "cat"}\n')
    assert df["sample_id"].tolist() == ["a"]


def test_partial_keeps_valid_lines_and_reports_rejects():
    df, problems = check(
        "x.jsonl", '{"sample_id": "a", "label": "cat"}\n{"sample_id": "zz", "label": "cat"}\n', partial=True
    )
    assert df["sample_id"].tolist() == ["a"] and len(problems) == 1 and "line 2" in problems[0]


def test_many_problems_are_all_listed():
    text = "".join(f'{{"sample_id": "x{i}", "label": "cat"}}\n' for i in range(60))
    with pytest.raises(LabelValidationError) as e:
        check("x.jsonl", text)
    assert len(e.value.problems) == 60 and "and 10 more" in str(e.value)


def _ls(tasks):
    return parse_label_file("export.json", json.dumps(tasks).encode())


def _ann(choice, who, when):
    return {
        "result": [{"type": "choices", "value": {"choices": [choice]}}],
        "completed_by": {"email": who},
        "updated_at": when,
    }


@pytest.mark.parametrize(
    ("task", "needle"),
    [
        ({"id": 1, "data": "m1d-000044", "annotations": []}, "'data' must be an object"),
        ({"data": {"sample_id": "a"}, "annotations": ["oops"]}, "must be a list of annotation objects"),
        ({"data": {"sample_id": "a"}, "annotations": {"id": 1}}, "must be a list of annotation objects"),
        ("not a task", "expected a task object"),
        ({"data": {"sample_id": "a"}, "annotations": [{"result": [{"value": "3"}]}]}, "exactly one choice"),
        ({"data": {"sample_id": "a"}, "annotations": [{"result": "x"}]}, "exactly one choice"),
    ],
)
def test_a_malformed_label_studio_export_is_a_problem_not_a_crash(task, needle):
    records, problems = _ls([task])
    assert records == [] and len(problems) == 1 and needle in problems[0]


def test_disagreeing_annotations_of_one_task_are_a_conflict_not_the_newest():
    task = {
        "data": {"sample_id": "a"},
        "annotations": [_ann("1", "x@a.org", "2026-01-02"), _ann("2", "y@a.org", "2026-01-03")],
    }
    records, problems = _ls([task])
    assert (
        records == [] and "disagree" in problems[0] and "1 by x@a.org" in problems[0] and "2 by y@a.org" in problems[0]
    )
    agree = {
        "data": {"sample_id": "a"},
        "annotations": [_ann("1", "x@a.org", "2026-01-02"), _ann("1", "y@a.org", "2026-01-03")],
    }
    records, problems = _ls([agree])
    assert problems == [] and [(r.sample_id, r.label, r.annotator) for r in records] == [("a", "1", "y@a.org")]
    cancelled = {**task, "annotations": [task["annotations"][0], {**task["annotations"][1], "was_cancelled": True}]}
    records, problems = _ls([cancelled])
    assert problems == [] and records[0].label == "1"
