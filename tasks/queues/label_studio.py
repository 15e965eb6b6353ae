"""``queue.backend: label-studio``: each round's batch becomes tasks of a Label Studio project, and the
annotations come back by Label Studio's webhook and by polling the project's export.

- **The project**: ``queue.label_studio.project`` names an existing one (its id or title); without it
  alp creates ``alp <workspace>`` with its labeling config (:func:`tasks.queue.label_config`). alp keeps
  the project's labeling config equal to its own and remembers the project in ``.alp/label-studio.json``.
- **Tasks**: the round's tasks (the sample as an image, a time series or a table, the model's guess as
  a prediction) are imported in alp's order. An import is idempotent: the project's tasks of the round
  are listed first and only the missing ones imported, so an export retried after Label Studio went
  down (or after a lost answer) creates each task once. Images are inline PNGs (``data:`` URIs), so
  no storage needs to be set up.
- **The webhook**: with ``queue.label_studio.webhook_url`` (where Label Studio reaches ``alp webhook``)
  alp registers it on the project (ANNOTATION_CREATED/UPDATED, with the secret of
  ``ALP_WEBHOOK_SECRET`` as ``Authorization: Token …``).
- **Polling** (:meth:`LabelStudioQueue.fetch`, run by every inbox poll of ``alp serve``): the project's
  JSON export; each annotation version (annotation id + ``updated_at``) not taken yet becomes one
  inbox file ``ls-<annotation id>-<version>.json`` — the same name the webhook spools it under, so an
  annotation that came by webhook is not taken again, and one that was missed is taken once. An
  updated annotation is a new version: the latest annotation wins (al_core.labels). Skipped and
  cancelled annotations are ignored, with one log line each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from al_core.config import QueueParams
from al_core.errors import ConfigError
from al_core.workspace import atomic_write_json, atomic_write_text
from tasks import label_studio as ls
from tasks.events import slug
from tasks.queue import FROM_NAME, TO_NAME
from tasks.queues import BACKENDS
from tasks.queues._base import ExportedBatch, QueueBackend, check_local_folder

log = logging.getLogger(__name__)

SECRET_ENV = "ALP_WEBHOOK_SECRET"
WEBHOOK_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"]


def annotation_version(ann: dict[str, Any]) -> str:
    """A stable key of an annotation's version: its ``updated_at`` (else ``created_at``) as a UTC instant,
    so the webhook payload's and the export's spellings of one time give one key."""
    text = str(ann.get("updated_at") or ann.get("created_at") or "")
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        text = (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC).isoformat(timespec="microseconds")
    except ValueError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def spool_name(ann: dict[str, Any]) -> str:
    """The inbox file of one annotation version: ``ls-<annotation id>-<version>.json`` (a slug and a hash,
    never a path taken from the payload)."""
    return f"ls-{slug(str(ann.get('id', 'x')))[:40]}-{annotation_version(ann)}.json"


def taken(inbox: Path, name: str) -> bool:
    """Whether an annotation version was taken already (waiting or ingested in the inbox, or refused)."""
    return (inbox / name).exists() or (inbox / "rejected" / name).exists()


class LabelStudioQueue(QueueBackend):
    name = "label-studio"
    summary = "a Label Studio project through its REST API (tasks with predictions; webhook + export polling)"

    @classmethod
    def check(cls, params: QueueParams) -> None:
        check_local_folder(params.path, "with the label-studio backend it is the queue's local copy (e.g. queue)")
        url = params.label_studio.url
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"label_studio.url = {url!r}: expected http(s)://host:port of Label Studio")

    @classmethod
    def transient(cls, exc: BaseException) -> bool:
        return ls.is_transient(exc)

    # ----------------------------------------------------------------- state
    @property
    def state_path(self) -> Path:
        return self.ws.alp_dir / "label-studio.json"

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}

    def _save(self, **changes: Any) -> None:
        atomic_write_json(self.state_path, {**self.state(), **changes})

    def client(self) -> ls.Client:
        p = self.ws.params.queue.label_studio
        url = (p.url or os.environ.get(ls.URL_ENV, "")).strip()
        token = os.environ.get(ls.TOKEN_ENV, "").strip()
        if not url:
            raise ConfigError(
                f"queue.backend: label-studio needs Label Studio's address: set queue.label_studio.url or {ls.URL_ENV}"
            )
        if not token:
            raise ConfigError(
                f"queue.backend: label-studio needs an API key in {ls.TOKEN_ENV} (Label Studio: Account & Settings → "
                "Legacy Token or Personal Access Token); it is read from the environment only"
            )
        return ls.Client(url, token)

    # --------------------------------------------------------------- project
    def project(self, client: ls.Client, label_config: str | None = None) -> int:
        """The project's id: remembered, named in params (id or title), or created by alp for this
        workspace (with ``label_config``)."""
        wanted = self.ws.params.queue.label_studio.project
        remembered = self.state()
        if remembered.get("project") is not None and remembered.get("url") == client.url:
            pid = int(remembered["project"])
        elif isinstance(wanted, int):
            pid = int(client.call("GET", f"/api/projects/{wanted}")["id"])
        elif wanted:
            found = [p for p in client.pages("/api/projects", "results", {"title": wanted}) if p.get("title") == wanted]
            if not found:
                raise ConfigError(
                    f"queue.label_studio.project = {wanted!r}: no Label Studio project of that title at {client.url}; "
                    "give its id or title, or leave it empty for alp to create one"
                )
            pid = int(min(found, key=lambda p: p["id"])["id"])
        else:  # a project of this workspace's own (never another one that happens to share the title)
            pid = self._create_project(client, label_config)
        self._save(url=client.url, project=pid)
        return pid

    def _create_project(self, client: ls.Client, label_config: str | None) -> int:
        """Create this workspace's project, once: its description carries a marker saved before the
        request, so when the answer is lost (a timeout, Label Studio restarting) the retry finds the
        project it made instead of making a second one."""
        title = f"alp {self.ws.name}"
        if label_config is None:
            raise ConfigError(f"no Label Studio project for {self.ws.root} yet: run a round first")
        state = self.state()
        marker = state.get("creating")
        if marker and state.get("url") == client.url:
            made = [
                p
                for p in client.pages("/api/projects", "results", {"title": title})
                if marker in (p.get("description") or "")
            ]
            if made:
                pid = int(min(made, key=lambda p: p["id"])["id"])
                log.info("found Label Studio project %d (%s), created before its answer was lost", pid, title)
                return pid
        else:
            marker = f"alp-workspace {uuid.uuid4().hex}"
            self._save(url=client.url, creating=marker)
        body = {
            "title": title,
            "label_config": label_config,
            "description": f"alp active-learning campaign {self.ws.name}: batches in alp's order ({marker})",
            "show_collab_predictions": True,  # the model's guess pre-fills the annotation
            "maximum_annotations": 1,
        }
        pid = int(client.call("POST", "/api/projects", body)["id"])
        log.info("created Label Studio project %d (%s) at %s", pid, title, client.url)
        return pid

    def _sync_config(self, client: ls.Client, pid: int, batch: ExportedBatch) -> None:
        project = client.call("GET", f"/api/projects/{pid}")
        if (project.get("label_config") or "").strip() != batch.label_config.strip():  # stored without the newline
            client.call("PATCH", f"/api/projects/{pid}", {"label_config": batch.label_config})

    def _show_newest_model(self, client: ls.Client, pid: int, batch: ExportedBatch) -> None:
        """The newest model's guesses pre-fill the tasks (Label Studio takes a model version only once
        predictions of it exist: after the import)."""
        versions = [p["model_version"] for t in batch.tasks for p in t["predictions"]]
        if versions and client.call("GET", f"/api/projects/{pid}").get("model_version") != versions[0]:
            client.call("PATCH", f"/api/projects/{pid}", {"model_version": versions[0]})

    def _register_webhook(self, client: ls.Client, pid: int) -> None:
        url = self.ws.params.queue.label_studio.webhook_url
        if not url:
            return
        hooks = client.call("GET", "/api/webhooks/", params={"project": pid})
        if any(h.get("url") == url and h.get("project") == pid for h in hooks or []):
            return
        secret = os.environ.get(SECRET_ENV, "").strip()
        if not secret:
            raise ConfigError(
                f"queue.label_studio.webhook_url is set: put the webhook's shared secret in {SECRET_ENV} "
                "(the same one `alp webhook` reads)"
            )
        body = {
            "project": pid,
            "url": url,
            "send_payload": True,
            "send_for_all_actions": False,
            "headers": {"Authorization": f"Token {secret}"},
            "actions": WEBHOOK_ACTIONS,
        }
        hook = client.call("POST", "/api/webhooks/", body)
        self._save(webhook=hook.get("id"))
        log.info("registered the webhook %s on Label Studio project %d", url, pid)

    def round_tasks(self, client: ls.Client, pid: int, r: int) -> dict[str, int]:
        """sample_id → Label Studio task id of round ``r``'s tasks in the project."""
        tasks = client.pages("/api/tasks", "tasks", {"project": pid, "fields": "all"})
        return {t["data"]["sample_id"]: t["id"] for t in tasks if t.get("data", {}).get("round") == r}

    # ------------------------------------------------------------- interface
    def publish(self, batch: ExportedBatch) -> dict[str, str]:
        with self.client() as client:
            pid = self.project(client, batch.label_config)
            self._sync_config(client, pid, batch)
            self._register_webhook(client, pid)
            there = self.round_tasks(client, pid, batch.round)
            missing = [t for t in batch.tasks if t["data"]["sample_id"] not in there]
            if missing:
                got = client.call("POST", f"/api/projects/{pid}/import", missing)
                log.info(
                    "imported %s task(s) of round %d into Label Studio project %d (%d there already)",
                    got.get("task_count"),
                    batch.round,
                    pid,
                    len(there),
                )
            self._show_newest_model(client, pid, batch)
            return {"label_studio_project": f"{client.url}/projects/{pid}"}

    def fetch(self) -> list[Path]:
        return sorted(self._poll().values())

    def _poll(self) -> dict[tuple[int, str], Path]:
        """Take the project's annotation versions not taken yet into the inbox; (annotation id, version) →
        its inbox file, for every annotation in the export (taken now or before)."""
        if self.state().get("project") is None:
            return {}  # no round exported to Label Studio yet
        inbox = self.ws.queue_dir / "inbox"
        out: dict[tuple[int, str], Path] = {}
        skipped = set(self.state().get("skipped", []))
        with self.client() as client:
            pid = self.project(client)
            export = client.call("GET", f"/api/projects/{pid}/export", params={"exportType": "JSON"})
        new_skips = []
        for task in export or []:
            for ann in task.get("annotations") or []:
                if ann.get("was_cancelled") or not ann.get("result"):
                    if ann.get("id") not in skipped:
                        log.info(
                            "Label Studio annotation %s of task %s (sample %s) was skipped or cancelled: ignored",
                            ann.get("id"),
                            task.get("id"),
                            task.get("data", {}).get("sample_id"),
                        )
                        new_skips.append(ann.get("id"))
                    continue
                name = spool_name(ann)
                path = inbox / name
                if not taken(inbox, name):
                    record = {"id": task.get("id"), "data": task.get("data"), "annotations": [ann]}
                    atomic_write_text(path, json.dumps([record], indent=1) + "\n")
                    log.info("took Label Studio annotation %s (task %s) by polling the export", ann["id"], task["id"])
                out[(int(ann["id"]), annotation_version(ann))] = path
        if new_skips:
            self._save(skipped=sorted(skipped | set(new_skips), key=str))
        return out

    def answer(self, r: int, lines: list[dict[str, str]]) -> list[str]:
        """Submit each line as an annotation in Label Studio (as an annotator would), then take them."""
        with self.client() as client:
            pid = self.project(client)
            ids = self.round_tasks(client, pid, r)
            made = []
            for line in lines:
                value = {"choices": [line["label"]]}
                result = [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": value}]
                task = ids[line["sample_id"]]
                made.append(client.call("POST", f"/api/tasks/{task}/annotations/", {"result": result}))
        polled = self._poll()
        return [str(polled[(int(a["id"]), annotation_version(a))]) for a in made]


BACKENDS.register(LabelStudioQueue.name, LabelStudioQueue)
