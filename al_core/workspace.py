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
    .alp/progress/round-NNN.json  the steps a round has done (git-ignored; resumes a killed round)
    .alp/locks/                   the writer lock and operational state (git-ignored)
    mlflow.db  mlartifacts/  .dvc-remote/                    (embedded defaults, git-ignored)

Every write is atomic (temp file in the same directory, fsync, rename) and happens under the
workspace's one writer lock (:meth:`Workspace.writer`). Readers take no lock and never write,
rename or delete: they see the state before or after a change (:meth:`Workspace.labeled_set`).
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from al_core import faults
from al_core.config import Params, load_params
from al_core.data import read_features, read_ids
from al_core.errors import WorkspaceError
from al_core.labels import HISTORY_COLUMNS, LABELED_COLUMNS, empty_labeled

ROUND_RE = re.compile(r"^round-(\d{3,})$")
T = TypeVar("T")

#: How long a writer waits for the workspace lock before giving up (``$ALP_LOCK_TIMEOUT_S``): a round
#: holds it while it trains, so an ingest may wait that long.
DEFAULT_LOCK_TIMEOUT_S = 3600.0


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
        """The local queue folder (with a remote queue: its local copy, ``queue/``)."""
        return self.root / self.params.queue.local_path

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
        """The versioned labeled set: sample_id, label, round, source, annotator, labeled_at.

        A read: no lock, nothing written. During a change it is the state before or after it.
        """

        def read() -> pd.DataFrame:
            view = self._journal_view()
            frames = []
            for p in self.labeled_files_after(view):
                # one read of the bytes: pyarrow opening the path twice could straddle a rename
                frames.append(pd.read_parquet(io.BytesIO(view.get(p, p).read_bytes())))
            frames = [f for f in frames if len(f)]
            if not frames:
                return empty_labeled()
            return pd.concat(frames, ignore_index=True)[LABELED_COLUMNS]

        return self._consistent(read)

    def labeled_files_after(self, view: dict[Path, Path]) -> list[Path]:
        """The round files of the labeled set once the change in ``view`` (final → pending) is done."""
        pending = (f for f in view if f.parent == self.labeled_dir and ROUND_RE.match(f.stem))  # not history.parquet
        return sorted({*self.labeled_files(), *pending})

    def labeled_round(self, r: int) -> pd.DataFrame:
        path = self.labeled_dir / f"{round_name(r)}.parquet"
        return pd.read_parquet(path) if path.exists() else empty_labeled()

    @property
    def journal_path(self) -> Path:
        return self.alp_dir / "ingest-journal.json"

    def _journal_view(self) -> dict[Path, Path]:
        """final path → the pending file holding its new content, for a decided change not yet renamed."""
        try:
            journal = json.loads(self.journal_path.read_text())
        except FileNotFoundError:
            return {}
        if not journal.get("decided", True):  # undecided: the change may still be undone
            return {}
        out = {}
        for tmp, final in journal["moves"]:
            tmp_p, final_p = self.root / tmp, self.root / final
            if tmp_p.exists():
                out[final_p] = tmp_p
        return out

    def _signature(self) -> tuple[Any, ...]:
        """What changes when a labeled-set change lands: the journal and the files it renames into place."""
        sig: list[Any] = []
        for p in [self.journal_path, self.ledger_path, *self.labeled_files()]:
            try:
                st = p.stat()
                sig.append((p.name, st.st_ino, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                sig.append((p.name, None))
        return tuple(sig)

    def _consistent(self, read: Callable[[], T]) -> T:
        """Run the read ``read`` until no change landed while it ran (a reader never waits on a lock)."""
        for _ in range(50):
            before = self._signature()
            try:
                value = read()
            except FileNotFoundError:  # a pending file renamed away under us: read again
                continue
            if self._signature() == before:
                return value
        return read()

    @property
    def history_path(self) -> Path:
        """Labels replaced by corrections (the labeled set's columns + ``replaced_at``, ``replaced_by``)."""
        return self.labeled_dir / "history.parquet"

    def label_history(self) -> pd.DataFrame:
        """Every label a correction replaced, oldest first (empty when none was)."""
        if not self.history_path.exists():
            return pd.DataFrame(columns=[*LABELED_COLUMNS, *HISTORY_COLUMNS])
        return pd.read_parquet(self.history_path)

    def commit_labeled(
        self,
        rounds: dict[int, pd.DataFrame],
        ledger_entry: dict[str, Any] | None = None,
        history: pd.DataFrame | None = None,
    ) -> None:
        """Replace several round files (and the label history, and append to the ledger) as one
        all-or-nothing change.

        Needs the writer lock (:meth:`writer`). The journal is written first, naming the pending
        files; then the pending files; then a ``decided`` journal; then the renames. Until the journal
        says ``decided``, a crash leaves the change undecided and the next writer deletes it; after,
        the next writer rolls it forward. Readers see it only once decided (before or after, never half).
        """
        self._require_writer("commit_labeled")
        self._recover_locked()
        moves: list[tuple[Path, Path]] = []
        for r in sorted(rounds):
            final = self.labeled_dir / f"{round_name(r)}.parquet"
            moves.append((final.with_name(f".{final.name}.pending"), final))
        if history is not None:
            moves.append((self.history_path.with_name(f".{self.history_path.name}.pending"), self.history_path))
        if ledger_entry is not None:
            moves.append((self.ledger_path.with_name(f".{self.ledger_path.name}.pending"), self.ledger_path))
        rel = [[str(t.relative_to(self.root)), str(f.relative_to(self.root))] for t, f in moves]
        atomic_write_json(self.journal_path, {"moves": rel, "decided": False})
        faults.point("ingest.journal-undecided")
        for (tmp, _), r in zip(moves, sorted(rounds), strict=False):
            df = rounds[r][LABELED_COLUMNS].sort_values("sample_id").reset_index(drop=True)
            df["round"] = df["round"].astype("int64")
            atomic_write_parquet(tmp, df)
        if history is not None:
            atomic_write_parquet(moves[len(rounds)][0], history.reset_index(drop=True))
        if ledger_entry is not None:
            lines = self.ledger_path.read_text() if self.ledger_path.exists() else ""
            atomic_write_text(moves[-1][0], lines + json.dumps(ledger_entry, sort_keys=True) + "\n")
        faults.point("ingest.pending-written")
        atomic_write_json(self.journal_path, {"moves": rel, "decided": True})
        faults.point("ingest.journal-decided")
        self._recover_locked()

    def _recover_locked(self) -> None:
        """Finish or undo an interrupted labeled-set change (writer lock held).

        A decided journal is rolled forward (rename what is left); an undecided one, and pending
        files with no journal, are deleted: that change never happened.
        """
        try:
            journal = json.loads(self.journal_path.read_text())
        except FileNotFoundError:
            journal = None
        if journal is not None and journal.get("decided", True):
            for i, (tmp, final) in enumerate(journal["moves"]):
                if (self.root / tmp).exists():
                    os.replace(self.root / tmp, self.root / final)
                    if i == 0:
                        faults.point("ingest.mid-rename")
            self.journal_path.unlink()
            return
        for folder in (self.labeled_dir, self.alp_dir):
            for stale in folder.glob(".*.pending") if folder.exists() else []:
                stale.unlink()
        self.journal_path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- writer lock
    @property
    def lock_path(self) -> Path:
        return self.alp_dir / "locks" / "writer.lock"

    @property
    def lock_holder_path(self) -> Path:
        return self.alp_dir / "locks" / "writer.json"

    def _file_lock(self) -> FileLock:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        # one instance per path in the process; each thread holds it on its own (thread-local),
        # so two threads of one process exclude each other as two processes do
        return FileLock(str(self.lock_path), is_singleton=True)

    def holds_writer(self) -> bool:
        """Whether this thread holds the workspace's writer lock."""
        return self.lock_path.exists() and self._file_lock().is_locked

    def _require_writer(self, what: str) -> None:
        if not self.holds_writer():
            raise WorkspaceError(f"internal: {what} changes {self.root} without its writer lock")

    def lock_holder(self) -> dict[str, Any]:
        """Who last took the writer lock (pid, command, what, since); {} if nobody has yet."""
        try:
            return json.loads(self.lock_holder_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    @contextmanager
    def writer(self, what: str, timeout: float | None = None) -> Iterator[Workspace]:
        """Hold the workspace's one writer lock (``.alp/locks/writer.lock``) for a change.

        Re-entrant within a thread. Waiting says whom it waits for; a lock whose holder died is
        free at once (the operating system drops it with the process). The first acquisition
        recovers an interrupted change of the labeled set and removes git's stale ``index.lock``.
        Raises :class:`WorkspaceError` after ``timeout`` seconds (default ``$ALP_LOCK_TIMEOUT_S``).
        """
        lock = self._file_lock()
        outermost = not lock.is_locked
        if timeout is None:
            timeout = float(os.environ.get("ALP_LOCK_TIMEOUT_S", DEFAULT_LOCK_TIMEOUT_S))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = self.lock_holder()
            # not print(): inside a Prefect flow with log_prints it would go to the (quiet) logger
            sys.stderr.write(f"alp: waiting for the writer lock of {self.root}: {describe_holder(holder)}\n")
            sys.stderr.flush()
            try:
                lock.acquire(timeout=timeout, poll_interval=0.05)
            except Timeout:
                raise WorkspaceError(
                    f"gave up after {timeout:.0f} s waiting for the writer lock of {self.root} "
                    f"({describe_holder(self.lock_holder())}); try again when it is done, or raise $ALP_LOCK_TIMEOUT_S"
                ) from None
        try:
            if outermost:
                atomic_write_json(
                    self.lock_holder_path,
                    {
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)),
                        "what": what,
                        "since": datetime.now(UTC).isoformat(timespec="seconds"),
                    },
                )
                self._recover_locked()
                stale_git = self.root / ".git" / "index.lock"
                if stale_git.exists():  # only alp writes this repository, and no other writer is running
                    stale_git.unlink()
            yield self
        finally:
            lock.release()

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

    def batch_lines(self, rounds: list[int] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(round, batch line) of every exported batch (or of ``rounds``), in round and rank order."""
        for r in self.exported_rounds() if rounds is None else rounds:
            for row in self.batch(r):
                yield r, row

    def queued(self) -> dict[str, int]:
        """sample_id → the round whose batch queued it."""
        return {row["sample_id"]: r for r, row in self.batch_lines()}

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
        """Every ingested file (digest, name, counts), as of the last decided change; a read."""

        def read() -> list[dict[str, Any]]:
            path = self._journal_view().get(self.ledger_path, self.ledger_path)
            if not path.exists():
                return []
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

        return self._consistent(read)

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {}

    def update_state(self, **values: Any) -> None:
        state = self.state()
        state.update(values)
        atomic_write_json(self.state_path, state)

    # ------------------------------------------------------------ round progress
    @property
    def progress_dir(self) -> Path:
        return self.alp_dir / "progress"

    def progress_path(self, r: int) -> Path:
        return self.progress_dir / f"{round_name(r)}.json"

    def round_progress(self, r: int) -> dict[str, Any]:
        """The steps round ``r`` has done so far ({} if it never started)."""
        path = self.progress_path(r)
        return json.loads(path.read_text()) if path.exists() else {}

    def incomplete_round(self) -> int | None:
        """The round that started and did not finish (killed or failed), if any."""
        if not self.progress_dir.exists():
            return None
        for p in sorted(self.progress_dir.glob("round-*.json"), reverse=True):
            if not json.loads(p.read_text()).get("done"):
                return int(ROUND_RE.match(p.stem).group(1))  # type: ignore[union-attr]
        return None


def describe_holder(holder: dict[str, Any]) -> str:
    """'pid 123 (alp round ws: round) since …' for a lock holder record."""
    if not holder:
        return "held by another process"
    who = f"pid {holder.get('pid')} ({holder.get('command')}: {holder.get('what')})"
    return f"held by {who} since {holder.get('since')}"
