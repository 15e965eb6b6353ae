"""A campaign's workspace on local disk: its layout and the reading/writing of its files.

Layout (DESIGN §3)::

    params.yaml  dvc.yaml  dvc.lock
    data/pool.parquet  data/test.parquet  data/meta.json     (prepare stage)
    data/labeled/round-NNN.parquet                           (dvc add; one file per round)
    data/round.json                                          (the round being trained)
    oracle/truth.parquet     ground truth for simulation: only the simulated annotator reads it
    models/model.pt  metrics/eval.json                       (train, evaluate stages)
    queue/round-NNN/{batch.jsonl,label-studio.json}          exported batches
    .alp/rounds/round-NNN.json  .alp/ingested.jsonl  .alp/state.json
    mlflow.db  mlartifacts/  .dvc-remote/                    (embedded defaults, git-ignored)

Every write is atomic (temp file in the same directory, fsync, rename).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from al_core.config import Params, load_params
from al_core.data import read_features, read_ids
from al_core.errors import WorkspaceError
from al_core.labels import LABELED_COLUMNS, empty_labeled

ROUND_RE = re.compile(r"^round-(\d{3,})$")


def round_name(r: int) -> str:
    return f"round-{r:03d}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_parquet(path: Path, df: pd.DataFrame) -> None:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


class Workspace:
    """Paths and local state of one workspace directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    # ---------------------------------------------------------------- paths
    @property
    def params_path(self) -> Path:
        return self.root / "params.yaml"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def pool_path(self) -> Path:
        return self.data_dir / "pool.parquet"

    @property
    def test_path(self) -> Path:
        return self.data_dir / "test.parquet"

    @property
    def val_path(self) -> Path:
        return self.data_dir / "val.parquet"

    @property
    def meta_path(self) -> Path:
        return self.data_dir / "meta.json"

    @property
    def labeled_dir(self) -> Path:
        return self.data_dir / "labeled"

    @property
    def round_path(self) -> Path:
        return self.data_dir / "round.json"

    @property
    def truth_path(self) -> Path:
        return self.root / "oracle" / "truth.parquet"

    @property
    def model_path(self) -> Path:
        return self.root / "models" / "model.pt"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics" / "eval.json"

    @property
    def alp_dir(self) -> Path:
        return self.root / ".alp"

    @property
    def rounds_dir(self) -> Path:
        return self.alp_dir / "rounds"

    @property
    def ledger_path(self) -> Path:
        return self.alp_dir / "ingested.jsonl"

    @property
    def state_path(self) -> Path:
        return self.alp_dir / "state.json"

    @property
    def queue_dir(self) -> Path:
        """The local queue folder (with an S3-backed queue: the local copy, ``queue/``)."""
        queue = self.params.queue
        return self.root / (queue.path if queue.backend == "folder" else "queue")

    @property
    def name(self) -> str:
        return self.root.name

    # ---------------------------------------------------------------- checks
    def require(self) -> Workspace:
        if not self.params_path.exists() or not (self.root / ".dvc").is_dir():
            raise WorkspaceError(f"{self.root} is not an alp workspace: create one with `alp init {self.root}`")
        return self

    @cached_property
    def params(self) -> Params:
        return load_params(self.params_path)

    def meta(self) -> dict[str, Any]:
        if not self.meta_path.exists():
            raise WorkspaceError(f"{self.meta_path} is missing: run `alp prepare {self.root}` or `dvc pull`")
        return json.loads(self.meta_path.read_text())

    @property
    def classes(self) -> list[str]:
        return list(self.meta()["classes"])

    # ------------------------------------------------------------------ data
    def pool(self) -> tuple[np.ndarray, np.ndarray]:
        ids, X, _ = read_features(self.pool_path)
        return ids, X

    def pool_ids(self) -> np.ndarray:
        """The pool's sample ids alone (reads one Parquet column, not the features)."""
        return read_ids(self.pool_path)

    def test_set(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids, X, y = read_features(self.test_path)
        assert y is not None
        return ids, X, y

    def val_set(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The fixed labeled validation split (``dataset.val_size``): (X, y), or None without one."""
        if not self.val_path.exists():
            return None
        _, X, y = read_features(self.val_path)
        return (X, y) if y is not None and len(y) else None

    def labeled_files(self) -> list[Path]:
        if not self.labeled_dir.exists():
            return []
        return sorted(p for p in self.labeled_dir.glob("round-*.parquet") if ROUND_RE.match(p.stem))

    def labeled_set(self) -> pd.DataFrame:
        """The versioned labeled set: sample_id, label, round, source, annotator, labeled_at."""
        self.recover()
        frames = [pd.read_parquet(p) for p in self.labeled_files()]
        frames = [f for f in frames if len(f)]
        if not frames:
            return empty_labeled()
        return pd.concat(frames, ignore_index=True)[LABELED_COLUMNS]

    def labeled_round(self, r: int) -> pd.DataFrame:
        path = self.labeled_dir / f"{round_name(r)}.parquet"
        return pd.read_parquet(path) if path.exists() else empty_labeled()

    @property
    def journal_path(self) -> Path:
        return self.alp_dir / "ingest-journal.json"

    def commit_labeled(self, rounds: dict[int, pd.DataFrame], ledger_entry: dict[str, Any] | None = None) -> None:
        """Replace several round files (and append to the ledger) as one all-or-nothing change.

        Every new file is written beside its target first; a journal naming them is written
        atomically; then the files are renamed into place and the journal removed. A crash before
        the journal exists leaves the labeled set as it was; after, :meth:`recover` (run by every
        reader) rolls the change forward, so it is never seen half-done.
        """
        self.recover()
        moves: list[tuple[str, str]] = []
        for r, df in sorted(rounds.items()):
            df = df[LABELED_COLUMNS].sort_values("sample_id").reset_index(drop=True)
            df["round"] = df["round"].astype("int64")
            final = self.labeled_dir / f"{round_name(r)}.parquet"
            tmp = final.with_name(f".{final.name}.pending")
            atomic_write_parquet(tmp, df)
            moves.append((str(tmp), str(final)))
        if ledger_entry is not None:
            lines = self.ledger_path.read_text() if self.ledger_path.exists() else ""
            tmp = self.ledger_path.with_name(f".{self.ledger_path.name}.pending")
            atomic_write_text(tmp, lines + json.dumps(ledger_entry, sort_keys=True) + "\n")
            moves.append((str(tmp), str(self.ledger_path)))
        atomic_write_json(self.journal_path, {"moves": moves})
        self.recover()

    def recover(self) -> None:
        """Finish a labeled-set change whose journal exists (after a crash): rename what is left.

        Without a journal, leftovers of a change that never got decided are deleted.
        """
        if not self.journal_path.exists():
            for folder in (self.labeled_dir, self.alp_dir):
                for stale in folder.glob(".*.pending") if folder.exists() else []:
                    stale.unlink()
            return
        for tmp, final in json.loads(self.journal_path.read_text())["moves"]:
            if Path(tmp).exists():
                os.replace(tmp, final)
        self.journal_path.unlink()

    # ----------------------------------------------------------------- queue
    def batch_path(self, r: int) -> Path:
        return self.queue_dir / round_name(r) / "batch.jsonl"

    def exported_rounds(self) -> list[int]:
        if not self.queue_dir.exists():
            return []
        return sorted(
            int(m.group(1))
            for p in self.queue_dir.iterdir()
            if (m := ROUND_RE.match(p.name)) and (p / "batch.jsonl").exists()
        )

    def batch(self, r: int) -> list[dict[str, Any]]:
        path = self.batch_path(r)
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def queued(self) -> dict[str, int]:
        """sample_id → the round whose batch queued it."""
        out: dict[str, int] = {}
        for r in self.exported_rounds():
            for row in self.batch(r):
                out[row["sample_id"]] = r
        return out

    def next_round(self) -> int:
        rounds = self.exported_rounds()
        return rounds[-1] + 1 if rounds else 0

    def pending(self) -> dict[int, list[str]]:
        """Per exported round, the queued ids still waiting for a label."""
        labeled = set(self.labeled_set()["sample_id"])
        out = {}
        for r in self.exported_rounds():
            waiting = [row["sample_id"] for row in self.batch(r) if row["sample_id"] not in labeled]
            if waiting:
                out[r] = waiting
        return out

    # ------------------------------------------------------------ bookkeeping
    def round_summary_path(self, r: int) -> Path:
        return self.rounds_dir / f"{round_name(r)}.json"

    def round_summaries(self) -> list[dict[str, Any]]:
        if not self.rounds_dir.exists():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.rounds_dir.glob("round-*.json"))]

    def write_round_summary(self, r: int, summary: dict[str, Any]) -> None:
        atomic_write_json(self.round_summary_path(r), summary)

    def ledger(self) -> list[dict[str, Any]]:
        self.recover()
        if not self.ledger_path.exists():
            return []
        return [json.loads(line) for line in self.ledger_path.read_text().splitlines() if line.strip()]

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {}

    def update_state(self, **values: Any) -> None:
        state = self.state()
        state.update(values)
        atomic_write_json(self.state_path, state)
