"""``table``: the user's own Parquet/CSV table: ``sample_id`` + numeric feature columns + ``label``.

``dataset.shape`` declares what one row's features are, e.g. ``[6, 100]`` for 6 sensor channels of
100 steps: the columns are taken in channel-major order (all of channel 0's steps, then channel 1's,
...), which is checked on column names that end in a step number (``acc_x_0 … acc_x_99, acc_y_0 …``).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from al_core.data import Dataset, check_sample_ids, features_table, read_table, split_holdout, write_features
from al_core.errors import DatasetError
from al_core.pool import ROW_GROUP_ROWS, RowWriter, open_dataset
from al_core.sources import SOURCES, DataSource, SourceParams
from al_core.sources._base import PreparedFiles

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


# ---------------------------------------------------------------------- streamed prepare (big tables)
_NO_PRE_BUFFER = pads.ParquetFragmentScanOptions(pre_buffer=False)


def _is_parquet(path: str) -> bool:
    """A Parquet file or folder of files, local or s3://: read in batches, never whole in memory."""
    if "://" in path:
        return True
    local = Path(path).expanduser()
    return local.is_dir() or local.suffix.lower() in (".parquet", ".pq")


def feature_names(p: TableParams) -> list[str]:
    """The table's feature columns (``feature_columns``, else every numeric column but id and label),
    from the Parquet schema alone, or the first rows of a CSV: never the whole table."""
    if p.feature_columns:
        return list(p.feature_columns)
    path = str(p.path or "")
    if _is_parquet(path):
        fields = [f for f in open_dataset(path).schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
        return [f.name for f in fields if f.name not in (p.id_column, p.label_column)]
    head = pd.read_csv(Path(path).expanduser(), nrows=1000, sep="\t" if path.lower().endswith(".tsv") else ",")
    return [c for c in head.select_dtypes("number").columns if c not in (p.id_column, p.label_column)]


def prepare_stream(p: TableParams, out: PreparedFiles) -> dict[str, Any] | None:
    """Write the pool, test and validation tables and the ground truth from a Parquet table read in
    row-group batches (pyarrow datasets, local or ``s3://``): what stays in memory for the whole
    table is O(N) scalars (ids, labels, the split), never its features. The same files, row for
    row, as :func:`load` + :func:`~al_core.data.write_prepared`. None for a CSV (loaded whole)."""
    if not _is_parquet(str(p.path or "")):
        return None
    data = open_dataset(str(p.path))
    where = str(p.path)
    names = data.schema.names
    if p.id_column not in names:
        raise DatasetError(f"{where}: no '{p.id_column}' column; add stable sample ids or set dataset.id_column")
    if p.label_column not in names:
        raise DatasetError(
            f"{where}: no '{p.label_column}' column. alp needs ground truth for a simulated campaign and a labeled "
            "test set; add the label column (or set dataset.label_column)"
        )
    features = feature_names(p)
    missing = [c for c in features if c not in names]
    if missing:
        raise DatasetError(f"{where}: dataset.feature_columns names missing columns {missing}")
    if not features:
        raise DatasetError(f"{where}: no numeric feature columns found; set dataset.feature_columns")
    shape = tuple(p.shape) if p.shape else (len(features),)
    check_channel_major(features, shape, where)
    labels = pc.unique(data.to_table(columns=[p.label_column]).column(p.label_column).cast(pa.string()))
    classes = sorted(v for v in labels.to_pylist() if v is not None)
    if len(classes) < 2:
        raise DatasetError(f"{where}: column '{p.label_column}' has {len(classes)} class(es); need at least 2")
    n = data.count_rows()
    if p.test_path:
        test_frame = (
            open_dataset(p.test_path).to_table().to_pandas()
            if _is_parquet(p.test_path)
            else read_table(Path(p.test_path).expanduser())
        )
        is_test = np.zeros(n, dtype=bool)
    else:
        is_test = np.zeros(n, dtype=bool)
        is_test[split_holdout(n, p.test_fraction, p.seed)[1]] = True
    n_pool = n - int(is_test.sum())
    is_val = np.zeros(n_pool, dtype=bool)
    if p.val_size:
        if p.val_size >= n_pool:
            raise DatasetError(f"dataset.val_size = {p.val_size} leaves no pool ({n_pool} samples); lower it")
        is_val[np.random.default_rng([p.seed, 1024]).choice(n_pool, size=p.val_size, replace=False)] = True
    class_set = pa.array(classes, type=pa.string())
    pool_writer = _RowGroupWriter(out.pool, len(features))
    rows = RowWriter(out.pool)
    try:
        test, val, pool_ids, pool_y = _stream_rows(p, data, features, class_set, is_test, is_val, pool_writer, rows)
    except BaseException:
        rows.abort()
        raise
    if p.test_path:
        test = _split_frame(p, test_frame, features, classes)
    write_features(out.test, *test)
    write_features(out.val, *val)
    all_ids = pa.chunked_array([*pool_ids.chunks, pa.array(test[0], pa.string()), pa.array(val[0], pa.string())])
    if pc.count_distinct(all_ids).as_py() != len(all_ids):
        counts = pc.value_counts(all_ids)
        dup = counts.field("values").filter(pc.greater(counts.field("counts"), 1))[:3].to_pylist()
        raise DatasetError(f"{where}: sample ids must be unique across pool and test; duplicated: {dup}")
    out.truth.parent.mkdir(parents=True, exist_ok=True)
    truth = pa.table({"sample_id": pool_ids, "label": pa.array(pool_y, pa.int64())})
    pq.write_table(truth, out.truth)
    return {
        "dataset": p.name,
        "classes": classes,
        "input_shape": list(shape),
        "n_pool": len(pool_ids),
        "n_test": len(test[0]),
        "n_val": len(val[0]),
    }


def _stream_rows(
    p: TableParams,
    data: Any,
    features: list[str],
    class_set: pa.Array,
    is_test: np.ndarray,
    is_val: np.ndarray,
    pool_writer: _RowGroupWriter,
    rows: RowWriter,
) -> tuple[tuple, tuple, pa.ChunkedArray, np.ndarray]:
    """One pass over the table's batches: pool rows to the pool file and row store, test and
    validation rows kept; returns (test, val, pool ids, pool labels)."""
    where = str(p.path)
    keep: dict[str, list] = {"pool_ids": [], "pool_y": [], "test": [], "val": []}
    row = pool_row = 0
    columns = [p.id_column, *features, p.label_column]
    # one batch in flight: the scanner's read-ahead (16 batches, 4 files) and pre-buffering of a file's
    # column chunks held up to the whole table (10M rows: 4 GB and growing)
    scan = {"batch_readahead": 1, "fragment_readahead": 1, "fragment_scan_options": _NO_PRE_BUFFER}
    for batch in data.to_batches(columns=columns, batch_size=ROW_GROUP_ROWS, **scan):
        if batch.num_rows == 0:
            continue
        ids = batch.column(p.id_column).cast(pa.string())
        bad = pc.invert(pc.match_substring_regex(ids, r"^[A-Za-z0-9._-]+$")).to_numpy(zero_copy_only=False)
        if bad.any():
            eg = ids.filter(bad)[:3].to_pylist()
            raise DatasetError(f"{where}: sample ids must match [A-Za-z0-9._-]+, e.g. {eg} do not")
        X = np.stack([batch.column(c).to_numpy(zero_copy_only=False) for c in features], axis=1).astype(np.float32)
        if not np.isfinite(X).all():
            raise DatasetError(f"{where}: feature columns hold NaN or infinite values; clean or impute them first")
        y = pc.index_in(batch.column(p.label_column).cast(pa.string()), value_set=class_set).to_numpy(
            zero_copy_only=False
        )
        test_rows = is_test[row : row + batch.num_rows]
        row += batch.num_rows
        if test_rows.any():
            keep["test"].append((ids.filter(test_rows), X[test_rows], y[test_rows]))
        ids, X, y = ids.filter(~test_rows), X[~test_rows], y[~test_rows]
        val_rows = is_val[pool_row : pool_row + len(y)]
        pool_row += len(y)
        if val_rows.any():
            keep["val"].append((ids.filter(val_rows), X[val_rows], y[val_rows]))
        ids, X, y = ids.filter(~val_rows), X[~val_rows], y[~val_rows]
        pool_writer.write(features_table(ids.to_numpy(zero_copy_only=False), X))
        rows.write(X)
        keep["pool_ids"].append(ids)
        keep["pool_y"].append(y.astype(np.int64))
    pool_writer.close()
    rows.commit()
    pool_y = np.concatenate(keep["pool_y"]) if keep["pool_y"] else np.zeros(0, np.int64)
    pool_ids = pa.chunked_array(keep["pool_ids"], type=pa.string())
    return _concat(keep["test"], len(features)), _concat(keep["val"], len(features)), pool_ids, pool_y


def _concat(parts: list, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, dtype=str), np.zeros((0, width), np.float32), np.zeros(0, np.int64)
    ids = np.concatenate([i.to_numpy(zero_copy_only=False).astype(str) for i, _, _ in parts])
    return ids, np.concatenate([x for _, x, _ in parts]), np.concatenate([y for _, _, y in parts]).astype(np.int64)


def _split_frame(
    p: TableParams, frame: pd.DataFrame, features: list[str], classes: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labeled test table's (ids, X, y), checked as :func:`load` checks it."""
    where = str(p.test_path)
    missing = [c for c in (p.id_column, p.label_column, *features) if c not in frame.columns]
    if missing:
        raise DatasetError(f"{where}: columns {missing[:5]} of the pool table are missing")
    ids = check_sample_ids(frame[p.id_column].astype(str).to_numpy(), where)
    X = frame[features].to_numpy(dtype=np.float32)
    if not np.isfinite(X).all():
        raise DatasetError(f"{where}: feature columns hold NaN or infinite values; clean or impute them first")
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(frame[p.label_column].astype(str)) - set(index))
    if unknown:
        raise DatasetError(f"{where}: labels {unknown[:5]} do not occur in the training table's classes")
    return ids, X, frame[p.label_column].astype(str).map(index).to_numpy(dtype=np.int64)


class _RowGroupWriter:
    """Tables appended to one Parquet file in row groups of ``ROW_GROUP_ROWS`` rows."""

    def __init__(self, path: Path, width: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.width = path, width
        self.writer: pq.ParquetWriter | None = None
        self.buffer: list[pa.Table] = []
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.rows += table.num_rows
        while self.rows >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def _flush(self, rows: int) -> None:
        whole = pa.concat_tables(self.buffer)
        head, rest = whole.slice(0, rows), whole.slice(rows)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, head.schema)
        self.writer.write_table(head, row_group_size=ROW_GROUP_ROWS)
        self.buffer, self.rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        if self.rows or self.writer is None:
            if not self.buffer:  # an empty pool: the schema of features_table still
                self.buffer = [features_table(np.zeros(0, dtype=str), np.zeros((0, self.width), np.float32))]
            self._flush(self.rows)
        assert self.writer is not None
        self.writer.close()


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
        prepare_stream=prepare_stream,
    ),
)
