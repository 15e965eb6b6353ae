"""``alp webhook DIR``: the endpoint Label Studio calls when an annotation is created or updated.

Configure a webhook in the Label Studio project (Settings → Webhooks): URL ``http://HOST:PORT/``,
header ``Authorization: Token <secret>`` (or ``X-Alp-Secret: <secret>``), actions
ANNOTATION_CREATED / ANNOTATION_UPDATED (and ANNOTATIONS_CREATED for bulk), "send payload" on.

Each call is checked cheaply (secret, framing, payload types, sample ids and classes against the
workspace) and, if good, recorded durably as a Label Studio JSON export in the queue's inbox, one file
per annotation version (``queue/inbox/ls-<annotation id>-<version>.json``: a slug and a hash, never a
path taken from the payload; the same name the label-studio backend's export poller gives it, so an
annotation is taken once whichever way it comes). Skipped or cancelled annotations, and (with the
label-studio backend) calls from a project that is not the campaign's, are answered 200 "ignored"
and logged, nothing spooled. A worker thread then runs the inbox flow, which ingests every new inbox file
under the workspace's writer lock, versions them in one commit and announces ``alp.batch.ready`` when
the newest batch is labeled. The answer waits for that ingest up to ``reply_within_s`` (below Label
Studio's 1 s timeout): 200 with what was added, or 202 "accepted" if it takes longer (the labels are
safe in the inbox; a refusal found then is logged and the file moved to ``queue/inbox/rejected/``).

Answers: 401 without the right secret (in constant time; nothing is read), 400 for bad framing or a
body that is not a Label Studio webhook, 411 without a Content-Length, 413 for a body over
:data:`MAX_BODY`, 422 when the labels are refused (the message says why), 404 for any other path.
``GET /media/<sample_id>?sig=…`` serves a queued sample's own file to the annotator's browser
(``queue.label_studio.media: served``, tasks/media.py): 403 without alp's signature, 404 for a
sample of no exported batch. Binds 127.0.0.1 unless told otherwise; one log line per request.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote, urlsplit

import typer

import tasks.s3  # noqa: F401  (the reader of s3:// sample uris, for served media)
from al_core.errors import ALError, LabelValidationError
from al_core.labels import parse_label_file, validate_labels
from al_core.pool import read_pool_ids
from al_core.uris import read_bytes
from al_core.workspace import Workspace, atomic_write_text
from tasks import media
from tasks.media import MEDIA_PATH
from tasks.queues.label_studio import LabelStudioQueue, spool_name, taken

log = logging.getLogger(__name__)

ANNOTATION_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"}
MAX_BODY = 16 * 1024 * 1024


def authorized(headers: Any, secret: str) -> bool:
    """``Authorization: Token <secret>`` (or ``Bearer``) or ``X-Alp-Secret: <secret>``, compared in constant time."""
    given = headers.get("X-Alp-Secret")
    if given is None:
        auth = headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        given = token.strip() if scheme.lower() in ("token", "bearer") else None
    return given is not None and hmac.compare_digest(given.encode(), secret.encode())


def _as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _skipped(ann: dict[str, Any]) -> bool:
    return bool(ann.get("was_cancelled")) or not ann.get("result")


def export_records(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The webhook's annotated task(s) as Label Studio export records (``data`` + ``annotations``).

    Raises ValueError naming the first field of the wrong type or missing."""
    raw = payload.get("annotations") if "annotations" in payload else [payload.get("annotation")]
    if not isinstance(raw, list) or not raw or any(a is None for a in raw):
        raise ValueError("no annotation in the payload: enable 'send payload' in the Label Studio webhook")
    anns = [_as_dict(a, "annotation") for a in raw]
    for a in anns:
        if not isinstance(a.get("result", []), list):
            raise ValueError("annotation.result must be a list")
        if not isinstance(a.get("id"), int | str | None):
            raise ValueError("annotation.id must be a number or a string")
    task = payload.get("task")
    if task is not None:
        task = _as_dict(task, "task")
        return [{"id": task.get("id"), "data": _as_dict(task.get("data"), "task.data"), "annotations": anns}]
    tasks = payload.get("tasks")
    if not isinstance(tasks, list):
        raise ValueError("the payload holds no task (nor a list of tasks)")
    by_id = {}
    for t in tasks:
        t = _as_dict(t, "tasks[]")
        by_id[t.get("id")] = t
    out = []
    for a in anns:
        t = by_id.get(a.get("task"))
        if t is None:
            raise ValueError(
                f"annotation {a.get('id')!r} names task {a.get('task')!r}, which the payload does not hold"
            )
        out.append({"id": t.get("id"), "data": _as_dict(t.get("data"), "task.data"), "annotations": [a]})
    return out


class ExportedBatches:
    """What the exported batches hold, for the webhook's checks and its media route: sample_id → the
    round that queued it, and sample_id → its uri (uri pools). Read again only when a batch appears (an
    exported batch never changes), not on every request; the webhook reads the queue, never writes it."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self._rounds: tuple[int, ...] | None = None
        self.queued: dict[str, int] = {}
        self.uris: dict[str, str] = {}

    def refresh(self) -> ExportedBatches:
        rounds = self.ws.exported_rounds()
        if tuple(rounds) != self._rounds:
            queued, uris = {}, {}
            for r, row in self.ws.batch_lines(rounds):
                queued[row["sample_id"]] = r
                if row.get("uri"):
                    uris[row["sample_id"]] = row["uri"]
            self.queued, self.uris, self._rounds = queued, uris, tuple(rounds)
        return self


class WebhookReceiver:
    """Turns authorised Label Studio webhook calls into inbox files, ingested by a worker thread."""

    def __init__(self, workspace: str | Path, secret: str, reply_within_s: float = 0.8):
        if not secret:
            raise ALError("the webhook secret is empty: set it in the environment variable given by --secret-env")
        self.ws = Workspace(workspace).require()
        self.secret = secret
        self.reply_within_s = reply_within_s
        self._pool_ids = read_pool_ids(self.ws.pool_path)  # one Arrow column, not a set of millions
        self._batches = ExportedBatches(self.ws)
        self._cv = threading.Condition()
        self._outcome: dict[str, dict[str, Any]] = {}  # inbox file name → what its ingest did
        self._pending = False
        self._stop = False
        self._worker = threading.Thread(target=self._work, name="alp-webhook-ingest", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ requests
    def handle(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        if not authorized(headers, self.secret):
            return HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong secret"}
        try:
            payload = json.loads(body.decode("utf-8"))
            if not isinstance(payload, dict):
                raise ValueError("expected a JSON object")
            action = payload.get("action")
            if action not in ANNOTATION_ACTIONS:
                return HTTPStatus.OK, {"ignored": action if isinstance(action, str) else None}
            records = export_records(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return HTTPStatus.BAD_REQUEST, {"error": f"not a Label Studio webhook payload: {exc}"}
        foreign = self._foreign_project(payload)
        if foreign:
            return HTTPStatus.OK, {"ignored": foreign}
        records = [r for r in records if not all(_skipped(a) for a in r["annotations"])]
        if not records:
            return HTTPStatus.OK, {"ignored": "a skipped or cancelled annotation: nothing to label"}
        try:
            self._check(records)
        except LabelValidationError as exc:
            return HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(exc)}
        names = []
        inbox = self.ws.queue_dir / "inbox"
        for rec in records:  # one file per annotation version, named as the export poller names it
            name = spool_name(rec["annotations"][0])
            if taken(inbox, name):
                continue  # delivered before (Label Studio retried, or the poller took it): once is enough
            names.append(name)
            atomic_write_text(inbox / name, json.dumps([rec], indent=1) + "\n")
        if not names:
            return HTTPStatus.OK, {"action": action, "added": 0, "duplicate": True}
        outcomes = self._wait_for(names)
        if outcomes is None:
            return HTTPStatus.ACCEPTED, {"action": action, "accepted": ", ".join(names)}
        refused = [o["refused"] for o in outcomes if o.get("refused")]
        if refused:
            return HTTPStatus.UNPROCESSABLE_ENTITY, {"error": "; ".join(refused)}
        added = sum(o.get("added", 0) for o in outcomes)
        return HTTPStatus.OK, {"action": action, "added": added, "file": ", ".join(names)}

    def media(self, sample_id: str, sig: str) -> tuple[int, dict[str, Any] | tuple[bytes, str]]:
        """A queued sample's own file for Label Studio's ``<Image>`` (tasks/media.py, ``media: served``):
        403 without the signature alp put in the task's URL, 404 for a sample of no exported batch,
        502 when its file cannot be read; else (bytes, content type)."""
        if not sig or not media.signed(self.secret, sample_id, sig):
            return HTTPStatus.FORBIDDEN, {"error": "missing or wrong signature: use the URL of the Label Studio task"}
        uri = self._batches.refresh().uris.get(sample_id)
        if uri is None:
            return HTTPStatus.NOT_FOUND, {"error": f"no queued sample {sample_id!r} with a file in this workspace"}
        try:
            return HTTPStatus.OK, media.web_image(read_bytes(uri), uri)
        except (OSError, ValueError, ALError) as exc:
            log.error("media %s: cannot read %s: %s", sample_id, uri, exc)
            return HTTPStatus.BAD_GATEWAY, {"error": f"the file of {sample_id} cannot be read: {exc}"}

    def _foreign_project(self, payload: dict[str, Any]) -> str | None:
        """With the label-studio backend: why a call from another project than the campaign's is ignored
        (its tasks are another campaign's, even where the sample ids look alike)."""
        if self.ws.params.queue.backend != LabelStudioQueue.name:
            return None
        ours = LabelStudioQueue(self.ws).state().get("project")
        project = payload.get("project")
        theirs = project.get("id") if isinstance(project, dict) else project
        task = payload.get("task")
        if theirs is None and isinstance(task, dict):
            theirs = task.get("project")
        if ours is None or theirs is None or str(theirs) == str(ours):
            return None
        return f"project {theirs} is not this workspace's Label Studio project ({ours})"

    def _check(self, records: list[dict[str, Any]]) -> None:
        """The cheap part of ingest validation: ids, queued, classes, agreement (raises LabelValidationError)."""
        data = json.dumps(records).encode()
        parsed, problems = parse_label_file("webhook.json", data)
        labeled = self.ws.labeled_set()
        validate_labels(
            "webhook payload",
            parsed,
            problems,
            classes=self.ws.classes,
            label_format=self.ws.params.queue.label_format,
            pool_ids=self._pool_ids.present([rec.sample_id for rec in parsed]),
            queued=self._batches.refresh().queued,
            labeled=dict(zip(labeled["sample_id"], labeled["label"], strict=True)),
            labeled_at=dict(zip(labeled["sample_id"], labeled["labeled_at"], strict=True)),
        )

    # -------------------------------------------------------------------- worker
    def _wait_for(self, names: list[str]) -> list[dict[str, Any]] | None:
        """What the ingest of each of ``names`` did, or None when it takes over ``reply_within_s``."""
        deadline = time.monotonic() + self.reply_within_s
        with self._cv:
            self._pending = True
            self._cv.notify_all()
            while not all(n in self._outcome for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cv.wait(left)
            return [self._outcome.pop(n) for n in names]

    def _work(self) -> None:
        from flows.inbox import inbox_flow

        while True:
            with self._cv:
                while not self._pending and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                self._pending = False
            try:
                out = inbox_flow(str(self.ws.root), fetch=False)  # the spooled calls; polling is serve's job
            except ALError as exc:
                log.error("webhook ingest failed (the files stay in the inbox; the next call retries): %s", exc)
                continue
            with self._cv:
                for name, n in out.get("added", {}).items():
                    self._outcome[name] = {"added": n}
                for name, reason in out.get("reasons", {}).items():
                    self._outcome[name] = {"refused": reason}
                    log.error("webhook file %s refused, moved to inbox/rejected/: %s", name, reason)
                self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._worker.join(timeout=60)


def make_server(receiver: WebhookReceiver, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "alp-webhook"
        timeout = 30  # a client that stops sending mid-body does not hold a thread forever

        def _reply(self, status: int, obj: dict[str, Any], detail: str = "") -> None:
            data = json.dumps(obj).encode()
            if status >= 400:
                self.close_connection = True  # an unread body must not be taken for the next request
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            what = detail or obj.get("error") or obj.get("ignored") or ""
            log.info("%s %s %s %s", self.command, self.path, int(status), str(what)[:200].replace("\n", " "))

        def _body_length(self) -> int | tuple[int, str]:
            if self.headers.get("Transfer-Encoding"):
                return HTTPStatus.LENGTH_REQUIRED, "send a Content-Length (chunked bodies are not accepted)"
            raw = self.headers.get("Content-Length")
            if raw is None:
                return HTTPStatus.LENGTH_REQUIRED, "Content-Length is required"
            if not raw.strip().isdigit():
                return HTTPStatus.BAD_REQUEST, f"Content-Length must be a non-negative integer, got {raw!r}"
            length = int(raw)
            if length > MAX_BODY:
                return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes"
            return length

        def do_POST(self) -> None:
            if self.path.split("?")[0] not in ("/", "/webhook"):
                self._reply(HTTPStatus.NOT_FOUND, {"error": "not found: post to /"})
                return
            if not authorized(self.headers, receiver.secret):  # before reading anything
                self._reply(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong secret"})
                return
            length = self._body_length()
            if isinstance(length, tuple):
                self._reply(length[0], {"error": length[1]})
                return
            body = self.rfile.read(length)
            if len(body) != length:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": "the body is shorter than its Content-Length"})
                return
            try:
                status, obj = receiver.handle(self.headers, body)
            except ALError as exc:
                status, obj = HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(exc)}
            self._reply(status, obj, detail=_request_detail(body, obj))

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path.startswith(MEDIA_PATH):
                self._media(unquote(url.path[len(MEDIA_PATH) :]), parse_qs(url.query).get("sig", [""])[0])
                return
            if url.path != "/":
                self._reply(HTTPStatus.NOT_FOUND, {"error": "not found"})
                return
            self._reply(HTTPStatus.OK, {"alp": "webhook", "workspace": receiver.ws.name})

        def _media(self, sample_id: str, sig: str) -> None:
            status, obj = receiver.media(sample_id, sig)
            if isinstance(obj, dict):
                self._reply(status, obj, detail=f"media {sample_id[:80]}: {obj.get('error')}")
                return
            data, kind = obj
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "private, max-age=3600")
            self.send_header("Access-Control-Allow-Origin", "*")  # Label Studio may load it with crossOrigin
            self.end_headers()
            self.wfile.write(data)
            log.info("GET %s%s 200 %s %d bytes", MEDIA_PATH, sample_id[:80], kind, len(data))

        def log_message(self, format: str, *args: Any) -> None:  # _reply logs each request once
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # a crowd of annotators at once is queued, not reset (default: 5)
        daemon_threads = True

    return Server((host, port), Handler)


def _request_detail(body: bytes, obj: dict[str, Any]) -> str:
    """'ANNOTATION_CREATED task=7 annotation=11 added=1' for the request's log line."""
    try:
        payload = json.loads(body)
        ann = payload.get("annotation") if isinstance(payload.get("annotation"), dict) else {}
        task = payload.get("task") if isinstance(payload.get("task"), dict) else {}
        head = f"{payload.get('action')} task={task.get('id')} annotation={ann.get('id')}"
    except (ValueError, AttributeError):
        head = "-"
    shown = ("added", "duplicate", "accepted", "ignored", "error")
    result = ", ".join(f"{k}={v}" for k, v in obj.items() if k in shown)
    return f"{head} {result}"[:300]


def webhook_command(
    directory: Annotated[Path, typer.Argument(help="The workspace directory.")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind (default: loopback only).")] = "127.0.0.1",
    secret_env: Annotated[
        str, typer.Option(help="Environment variable holding the shared secret Label Studio sends.")
    ] = "ALP_WEBHOOK_SECRET",
) -> None:
    """Receive Label Studio webhooks (ANNOTATION_CREATED/UPDATED) and ingest their labels; serve an
    image pool's queued files to the annotators' browsers (queue.label_studio.media: served)."""
    from flows.cli import console
    from flows.options import quiet_services
    from flows.prefect_api import prefect_api

    quiet_services()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    with prefect_api():
        receiver = WebhookReceiver(directory, os.environ.get(secret_env, ""))
        server = make_server(receiver, host, port)
        console.print(f"alp webhook for {receiver.ws.root} on http://{host}:{server.server_address[1]}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            receiver.close()
