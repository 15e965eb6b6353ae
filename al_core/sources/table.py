"""``table``: the user's own Parquet/CSV table: ``sample_id`` + numeric feature columns + ``label``.

``dataset.shape`` declares what one row's features are, e.g. ``[6, 100]`` for 6 sensor channels of
100 steps: the columns are taken in channel-major order (all of channel 0's steps, then channel 1's,
...), which is checked on column names that end in a step number (``acc_x_0 … acc_x_99, acc_y_0 …``).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from al_core.data import Dataset, check_sample_ids, read_table, split_holdout
from al_core.errors import DatasetError
from al_core.sources import SOURCES, DataSource, SourceParams

_STEP_RE = re.compile(r"^(.*?)[_\-.:\[]?(\d+)\]?$")


class TableParams(SourceParams):
    name: Literal["table"] = "table"
    path: str | None = Field(default=None, description="your Parquet/CSV file: sample_id, features, label")
    test_path: str | None = Field(default=None, description="a labeled test file (else test_fraction of the table)")
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0, description="share held out for testing")
    id_column: str = Field(default="sample_id", description="stable sample ids, [A-Za-z0-9._-]+")
    label_column: str = Field(default="label", description="ground truth (simulation) / test labels")
    feature_columns: list[str] | None = Field(default=None, description="null = every numeric column but id, label")
    shape: list[int] | None = Field(
        default=None, description="one row's shape, e.g. [C, L]: columns in channel-major order (null = flat)"
    )

    @model_validator(mode="after")
    def _needs_path(self) -> TableParams:
        if not self.path:
            raise ValueError("dataset.path is required for dataset.name = table (a Parquet or CSV file)")
        if self.shape is not None and (not self.shape or min(self.shape) < 1):
            raise ValueError(f"dataset.shape = {self.shape}: give positive sizes, e.g. [6, 100]")
        return self


def check_channel_major(columns: list[str], shape: tuple[int, ...], where: str) -> None:
    """``columns`` fill ``shape`` in channel-major order: each block of prod(shape[1:]) columns is one
    channel (one name prefix, rising step numbers). Names without a trailing number are not checked."""
    n = int(np.prod(shape))
    if len(columns) != n:
        raise DatasetError(
            f"{where}: dataset.shape = {list(shape)} needs {n} feature columns, found {len(columns)}; "
            "fix dataset.shape or dataset.feature_columns"
        )
    parsed = [_STEP_RE.match(c) for c in columns]
    if len(shape) < 2 or not all(parsed):
        return
    block = n // shape[0]
    for c in range(shape[0]):
        part = parsed[c * block : (c + 1) * block]
        prefixes = list(dict.fromkeys(m.group(1) for m in part))
        steps = [int(m.group(2)) for m in part]
        if len(prefixes) > 1 or any(b <= a for a, b in itertools.pairwise(steps)):
            raise DatasetError(
                f"{where}: columns {columns[c * block]} … {columns[(c + 1) * block - 1]} should be channel {c}'s "
                f"{block} steps (dataset.shape = {list(shape)}, channel-major) but mix {prefixes[:4]}; order "
                "dataset.feature_columns channel by channel (ch0_0 … ch0_L-1, ch1_0 …)"
            )


def load(p: TableParams) -> Dataset:
    """The table, split into pool and test (``test_path``, or ``test_fraction`` of the rows)."""
    path = Path(p.path or "").expanduser()
    df = read_table(path)
    if p.id_column not in df.columns:
        raise DatasetError(f"{path}: no '{p.id_column}' column; add stable sample ids or set dataset.id_column")
    features = p.feature_columns or [
        c for c in df.columns if c not in (p.id_column, p.label_column) and pd.api.types.is_numeric_dtype(df[c])
    ]
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: dataset.feature_columns names missing columns {missing}")
    if not features:
        raise DatasetError(f"{path}: no numeric feature columns found; set dataset.feature_columns")
    shape = tuple(p.shape) if p.shape else (len(features),)
    check_channel_major(features, shape, str(path))
    if p.label_column not in df.columns:
        raise DatasetError(
            f"{path}: no '{p.label_column}' column. alp needs ground truth for a simulated campaign and a labeled "
            "test set; add the label column (or set dataset.label_column)"
        )
    classes = sorted(df[p.label_column].astype(str).unique().tolist())
    if len(classes) < 2:
        raise DatasetError(f"{path}: column '{p.label_column}' has {len(classes)} class(es); need at least 2")
    index = {c: i for i, c in enumerate(classes)}

    def split(frame: pd.DataFrame, where: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = check_sample_ids(frame[p.id_column].astype(str).to_numpy(), where)
        X = frame[features].to_numpy(dtype=np.float32)
        if not np.isfinite(X).all():
            raise DatasetError(f"{where}: feature columns hold NaN or infinite values; clean or impute them first")
        unknown = sorted(set(frame[p.label_column].astype(str)) - set(index))
        if unknown:
            raise DatasetError(f"{where}: labels {unknown[:5]} do not occur in the training table's classes")
        y = frame[p.label_column].astype(str).map(index).to_numpy(dtype=np.int64)
        return ids, X, y

    if p.test_path:
        test_path = Path(p.test_path).expanduser()
        pool = split(df, path)
        test = split(read_table(test_path), test_path)
    else:
        tr, te = split_holdout(len(df), p.test_fraction, p.seed)
        pool, test = split(df.iloc[tr], path), split(df.iloc[te], path)
    return Dataset(*pool, *test, classes, shape).checked(str(path))


SOURCES.register(
    "table",
    DataSource(
        "table",
        TableParams,
        load,
        default_arch="mlp",
        summary="your Parquet/CSV table (`dataset.shape: [C, L]` for multichannel series)",
        path_keys=("path", "test_path"),
        data_help="the pool table, then optionally a labeled test table",
    ),
)
