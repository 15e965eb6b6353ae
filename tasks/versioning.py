"""git + DVC inside a workspace: init, version the labeled set (commit, tag, push), record results.

The pipeline commits only inside the workspace it is given, never in alp's own repository.
All git/DVC work of a workspace holds the workspace's writer lock (:meth:`Workspace.writer`), which
also clears a stale ``.git/index.lock`` left by a killed git.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import chdir, contextmanager
from pathlib import Path

from al_core import faults
from al_core.errors import WorkspaceError
from al_core.workspace import Workspace, round_name

log = logging.getLogger(__name__)

GITIGNORE = """\
# alp: embedded services and scratch, never versioned by git
/mlflow.db
/mlflow.db-*
/mlartifacts/
/.dvc-remote/
/.alp/locks/
/.alp/progress/
*.tmp
# the train stage's output lives in DVC's cache: never in git, even before the first `dvc commit`
/models/model.pt
"""


def git(root: Path, *args: str, check: bool = True) -> str:
    """Run git inside ``root`` (its own repository) and return stdout."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


@contextmanager
def dvc_lock(ws: Workspace) -> Iterator[None]:
    """The workspace's writer lock around git/DVC work (re-entrant: a step holding it may call more)."""
    with ws.writer("git/DVC"):
        yield


@contextmanager
def quiet_loggers(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise the level of chatty third-party loggers for the duration of a call."""
    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, old, strict=True):
            lg.setLevel(lvl)


@contextmanager
def dvc_repo(ws: Workspace) -> Iterator[object]:
    from dvc.repo import Repo

    # DVC resolves some paths against the working directory: work from the workspace root.
    with quiet_loggers("dvc"), dvc_lock(ws), chdir(ws.root), Repo(str(ws.root)) as repo:
        yield repo


def remote_url(ws: Workspace) -> str:
    """The DVC remote: a URL or absolute path as given; a relative path (the default ``.dvc-remote``)
    relative to the workspace root. DVC stores a relative one relative to ``.dvc/`` (``../.dvc-remote``),
    so a copied or moved workspace pushes to its own remote."""
    return ws.params.versioning.remote or ".dvc-remote"


def init_repo(ws: Workspace) -> None:
    """Make ``ws.root`` its own git repository with DVC initialised and a default remote."""
    from dvc.repo import Repo

    root = ws.root
    if not (root / ".git").exists():
        git(root, "init", "-q", "-b", "main")
    # A workspace commits as alp unless the user configured git identity for it.
    if not git(root, "config", "user.name", check=False):
        git(root, "config", "user.name", "alp")
    if not git(root, "config", "user.email", check=False):
        git(root, "config", "user.email", "alp@localhost")
    (root / ".gitignore").write_text(GITIGNORE)
    if not (root / ".dvc").exists():
        with quiet_loggers("dvc"), chdir(root):
            Repo.init(str(root))
    with dvc_repo(ws) as repo, repo.config.edit() as conf:  # type: ignore[attr-defined]
        conf["core"]["analytics"] = False
        conf["core"]["autostage"] = True
        conf["remote"]["storage"] = {"url": remote_url(ws)}
        conf["core"]["remote"] = "storage"


def dir_hash(path: Path) -> str:
    """Content hash of the labeled set: sha256 over (name, bytes) of its files, sorted by name."""
    h = hashlib.sha256()
    for f in sorted(path.glob("*.parquet")) if path.exists() else []:
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def commit_all(ws: Workspace, message: str) -> str:
    """Stage everything git should track and commit (if anything changed); return HEAD."""
    git(ws.root, "add", "-A")
    if git(ws.root, "status", "--porcelain"):
        git(ws.root, "commit", "-q", "-m", message)
    return git(ws.root, "rev-parse", "HEAD")


def version_labeled_set(ws: Workspace, r: int, retag: bool = False) -> dict[str, str]:
    """``dvc add`` the labeled set, commit, tag ``round-NNN`` and ``dvc push``.

    ``retag``: the round has not exported its batch yet (a resumed round), so a tag an earlier attempt
    left is moved to the new commit: nothing was published under it. Without ``retag`` an existing
    tag is refused before anything is committed. Returns the tag, the commit and the
    content hash of the labeled set.
    """
    tag = round_name(r)
    existing = git(ws.root, "tag", "--list", tag)
    if existing and not retag:
        raise WorkspaceError(
            f"tag {tag} already exists in {ws.root}: a round with this number was versioned and exported "
            "before. Inspect `git log --decorate` in the workspace; delete the stale tag only if you are sure."
        )
    add_labeled_set(ws)
    commit = commit_all(ws, f"{tag}: labeled set ({len(ws.labeled_files())} file(s))")
    faults.point("round.tag")
    if not existing:
        git(ws.root, "tag", "-a", tag, "-m", f"alp {tag}: labeled set")
    elif git(ws.root, "rev-parse", f"{tag}^{{commit}}") != commit:
        log.warning("round %s resumed: tag %s moved to %s", r, tag, commit[:8])
        git(ws.root, "tag", "-f", "-a", tag, "-m", f"alp {tag}: labeled set")
    push(ws)
    return {"tag": tag, "commit": commit, "data_hash": dir_hash(ws.labeled_dir)}


def add_labeled_set(ws: Workspace) -> None:
    """``dvc add data/labeled`` (one DVC-tracked directory, one file per round inside)."""
    ws.labeled_dir.mkdir(parents=True, exist_ok=True)
    with dvc_repo(ws) as repo:
        repo.add(str(ws.labeled_dir))  # type: ignore[attr-defined]


def push(ws: Workspace) -> None:
    if not ws.params.versioning.push:
        return
    with dvc_repo(ws) as repo:
        repo.push()  # type: ignore[attr-defined]


def commit_stage_outputs(ws: Workspace, stages: list[str]) -> None:
    """Record the outputs the flow produced in-process for ``stages`` in dvc.lock (``dvc commit``)."""
    with dvc_repo(ws) as repo:
        for stage in stages:
            repo.commit(stage, force=True)  # type: ignore[attr-defined]
