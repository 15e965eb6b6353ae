"""What the annotator sees in Label Studio: one labeling config and task data per modality, the
model's guess as a prediction whose score is its probability, acquisition score/name/rank as data."""

from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from tasks.queue import (
    FROM_NAME,
    TO_NAME,
    batch_records,
    label_config,
    label_studio_tasks,
    presentation,
    sample_png,
)

CLASSES = ["0", "1", "2"]


def records(n: int = 2):
    probs = np.array([[0.142, 0.5, 0.358], [0.8, 0.1, 0.1]])[:n]
    return batch_records(3, "entropy", np.array(["s-1", "s-2"][:n]), np.array([2.2487, 1.5])[:n], probs, CLASSES,
                         "ws/round-003", top_k=2)  # fmt: skip


@pytest.mark.parametrize(
    ("dataset", "shape", "names", "kind", "tag"),
    [
        ("digits", (1, 8, 8), None, "image", "Image"),
        ("mnist", (1, 28, 28), None, "image", "Image"),
        ("images", (3, 32, 32), None, "image", "Image"),
        ("mnist1d", (40,), None, "series", "TimeSeries"),
        ("table", (3, 5), [f"{c}_{i}" for c in ("acc_x", "acc_y", "acc_z") for i in range(5)], "series", "TimeSeries"),
        ("arrays", (6, 20), None, "series", "TimeSeries"),
        ("table", (4,), ["age", "height", "weight", "pulse"], "table", "Table"),
    ],
)
def test_each_modality_gets_its_object_tag_and_the_choices_point_at_it(dataset, shape, names, kind, tag):
    pres = presentation(dataset, shape, names)
    assert pres.kind == kind
    root = ET.fromstring(label_config(CLASSES, pres))
    sample = root.find(tag)
    assert sample is not None and sample.get("name") == TO_NAME
    choices = root.find("Choices")
    assert choices.get("name") == FROM_NAME and choices.get("toName") == TO_NAME
    assert [c.get("value") for c in choices] == CLASSES
    if kind == "series":
        channels = [c.get("column") for c in sample.findall("Channel")]
        assert len(channels) == (shape[0] if len(shape) == 2 else 1)
        assert sample.get("valueType") == "json"


def test_channel_names_come_from_channel_major_columns():
    names = [f"{c}_{i}" for c in ("acc_x", "acc_y") for i in range(3)]
    assert presentation("table", (2, 3), names).names == ("acc_x", "acc_y")
    assert presentation("arrays", (2, 3)).names == ("ch0", "ch1")
    assert presentation("mnist1d", (40,)).names == ("signal",)


def test_the_prediction_score_is_the_models_probability_not_the_acquisition_score():
    tasks = label_studio_tasks(records())
    first = tasks[0]
    (pred,) = first["predictions"]
    assert pred["score"] == 0.5  # P(top class), not the entropy 2.2487 (shown as "224.87%" before)
    assert pred["model_version"] == "ws/round-003"
    assert pred["result"] == [
        {"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": ["1"]}}
    ]
    assert first["data"] == {
        "sample_id": "s-1",
        "round": 3,
        "rank": 1,
        "acquisition": "entropy",
        "acquisition_score": 2.2487,
        "model_guess": "1",
        "model_probability": 0.5,
    }
    assert [t["data"]["rank"] for t in tasks] == [1, 2]  # alp's order is the import order


def test_cold_start_tasks_have_no_prediction():
    recs = batch_records(0, "random", np.array(["a"]), np.array([0.0]), None, CLASSES, None, 3)
    (task,) = label_studio_tasks(recs)
    assert task["predictions"] == [] and "model_guess" not in task["data"]


def test_series_and_table_rows_become_readable_task_data():
    series = presentation("table", (2, 3), ["x_0", "x_1", "x_2", "y_0", "y_1", "y_2"])
    rows = np.array([[0.0, 1.0, 2.0, 10.0, 11.0, 12.0], [0.5] * 6], dtype=np.float32)
    tasks = label_studio_tasks(records(), series, rows)
    assert tasks[0]["data"]["series"] == {"x": [0.0, 1.0, 2.0], "y": [10.0, 11.0, 12.0]}
    table = presentation("table", (3,), ["age", "height", "weight"])
    tasks = label_studio_tasks(records(), table, rows[:, :3])
    assert tasks[0]["data"]["table"] == {"age": 0.0, "height": 1.0, "weight": 2.0}


def test_images_are_inline_pngs_of_the_sample_scaled_up_without_smoothing():
    pres = presentation("digits", (1, 8, 8))
    row = np.zeros(64, dtype=np.float32)
    row[0] = 1.0  # top-left pixel white
    tasks = label_studio_tasks(records(1), pres, row[None], ["round-003/images/s-1.png"])
    uri = tasks[0]["data"]["image"]
    assert uri.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert img.mode == "L" and img.size == (112, 112)  # 8 × 14: crisp blocks, not an 8-pixel speck
    px = np.asarray(img)
    assert px[:14, :14].min() == 255 and px[14:, :].max() == 0 and px[:, 14:].max() == 0
    assert tasks[0]["data"]["image_file"] == "round-003/images/s-1.png"
    rgb = Image.open(io.BytesIO(sample_png(np.random.default_rng(0).normal(size=3 * 4 * 4), (3, 4, 4))))
    assert rgb.mode == "RGB"  # any value range is stretched to 0..255
