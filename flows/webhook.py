"""``alp webhook DIR``: the endpoint Label Studio calls when an annotation is created or updated.

Configure a webhook in the Label Studio project (Settings → Webhooks): URL ``http://HOST:PORT/``,
header ``Authorization: Token <secret>`` (or ``X-Alp-Secret: <secret>``), actions
ANNOTATION_CREATED / ANNOTATION_UPDATED (and ANNOTATIONS_CREATED for bulk), "send payload" on.
Each accepted call writes the annotated task(s) as a Label Studio JSON export into the queue's inbox
(``queue/inbox/ls-webhook-….json``) and runs the ingest flow on it, which validates, merges, versions
and, once the newest batch is labeled, announces ``alp.batch.ready`` (the next round, under ``alp serve``).

Answers: 401 without the right secret (nothing is read or written), 400 for a body that is not a Label
Studio webhook, 422 when the labels are refused (the message says why), 200 otherwise. Binds
127.0.0.1 unless told otherwise; stdlib ``http.server``, one ingest at a time.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import typer

from al_core.errors import ALError, LabelValidationError
from al_core.workspace import Workspace, atomic_write_text

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


def export_records(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The webhook's annotated task(s) as Label Studio export records (``data`` + ``annotations``)."""
    task = payload.get("task")
    anns = payload.get("annotations") if isinstance(payload.get("annotations"), list) else [payload.get("annotation")]
    anns = [a for a in anns if isinstance(a, dict)]
    if not anns:
        raise ValueError("no annotation in the payload: enable 'send payload' in the Label Studio webhook")
    if isinstance(task, dict):
        return [{"id": task.get("id"), "data": task.get("data") or {}, "annotations": anns}]
    tasks = payload.get("tasks") if isinstance(payload.get("tasks"), list) else []  # bulk: tasks listed apart
    by_id = {t.get("id"): t for t in tasks if isinstance(t, dict)}
    out = []
    for a in anns:
        t = by_id.get(a.get("task"))
        if t is None:
            raise ValueError(f"annotation {a.get('id')} names task {a.get('task')}, which the payload does not hold")
        out.append({"id": t.get("id"), "data": t.get("data") or {}, "annotations": [a]})
    return out


class WebhookReceiver:
    """Turns authorised Label Studio webhook calls into ingested label files."""

    def __init__(self, workspace: str | Path, secret: str):
        if not secret:
            raise ALError("the webhook secret is empty: set it in the environment variable given by --secret-env")
        self.ws = Workspace(workspace).require()
        self.secret = secret
        self._lock = threading.Lock()  # one ingest at a time

    def handle(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        if not authorized(headers, self.secret):
            return HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong secret"}
        try:
            payload = json.loads(body.decode("utf-8"))
            if not isinstance(payload, dict):
                raise ValueError("expected a JSON object")
            action = payload.get("action")
            if action not in ANNOTATION_ACTIONS:
                return HTTPStatus.OK, {"ignored": action}
            records = export_records(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return HTTPStatus.BAD_REQUEST, {"error": f"not a Label Studio webhook payload: {exc}"}
        return self._ingest(action, records)

    def _ingest(self, action: str, records: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        from flows.ingest import ingest_flow

        inbox = self.ws.queue_dir / "inbox"
        ann = records[0]["annotations"][0]
        path = inbox / f"ls-webhook-{ann.get('id', 'x')}-{uuid.uuid4().hex[:8]}.json"
        with self._lock:
            atomic_write_text(path, json.dumps(records, indent=1) + "\n")
            try:
                results = ingest_flow(str(self.ws.root), [str(path)])
            except LabelValidationError as exc:
                path.unlink(missing_ok=True)  # refused: not left in the inbox for the poller
                return HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(exc)}
            except ALError as exc:
                path.unlink(missing_ok=True)
                return HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(exc)}
        added = sum(r["added"] for r in results)
        log.info("%s: %d label(s) ingested from %s", action, added, path.name)
        return HTTPStatus.OK, {"action": action, "added": added, "file": path.name}


def make_server(receiver: WebhookReceiver, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "alp-webhook"

        def _reply(self, status: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if not authorized(self.headers, receiver.secret):  # before reading anything
                self._reply(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong secret"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                return
            status, obj = receiver.handle(self.headers, self.rfile.read(length))
            self._reply(status, obj)

        def do_GET(self) -> None:
            self._reply(HTTPStatus.OK, {"alp": "webhook", "workspace": receiver.ws.name})

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

    return ThreadingHTTPServer((host, port), Handler)


def webhook_command(
    directory: Annotated[Path, typer.Argument(help="The workspace directory.")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind (default: loopback only).")] = "127.0.0.1",
    secret_env: Annotated[
        str, typer.Option(help="Environment variable holding the shared secret Label Studio sends.")
    ] = "ALP_WEBHOOK_SECRET",
) -> None:
    """Receive Label Studio webhooks (ANNOTATION_CREATED/UPDATED) and ingest their labels."""
    from flows.cli import _fail, console
    from flows.options import quiet_services

    quiet_services()
    try:
        receiver = WebhookReceiver(directory, os.environ.get(secret_env, ""))
    except ALError as exc:
        _fail(exc)
    server = make_server(receiver, host, port)
    console.print(f"alp webhook for {receiver.ws.root} on http://{host}:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
