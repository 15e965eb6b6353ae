"""The Prefect API a CLI verb's flows talk to: the user's server, or a temporary one alp starts itself.

With ``PREFECT_API_URL`` set (``alp stack env``, a profile, the test harness) that server is used.
Without it, Prefect would start an ephemeral server of its own; alp starts it instead, for two
reasons. The start-up may take long on a busy machine (Prefect's default gives up after 20 s):
alp waits :data:`DEFAULT_STARTUP_TIMEOUT_S` (``$PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``
overrides it) and says what to do when it still fails. And the server must not outlive alp: it is
started with the parent-death signal (Linux ``PR_SET_PDEATHSIG``), so even ``kill -9`` of the alp
command takes the server with it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from al_core.errors import ALError

#: Measured (benchmarks/bench_prefect_startup.py): on 2 cores with two CPU burners beside other jobs
#: the server needed 39-66 s (median 41 s); the default leaves a margin of nearly 3x over the worst.
DEFAULT_STARTUP_TIMEOUT_S = 180.0
STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


class PrefectUnavailableError(ALError):
    """The temporary Prefect server could not be started."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgrp()  # Ctrl-C in the terminal reaches alp, which stops the server itself


def startup_timeout() -> float:
    return float(os.environ.get(STARTUP_TIMEOUT_ENV) or DEFAULT_STARTUP_TIMEOUT_S)


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def prefect_api() -> Iterator[str | None]:
    """Within the block flows have a Prefect API; yields its URL (None: the configured one is used)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield None
        return
    import prefect

    from flows.stack import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent)]
    cmd += ["--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--log-level", "error", "--lifespan", "on"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        try:
            _wait_healthy(proc, url, log)
            with temporary_settings(updates={PREFECT_API_URL: url}):
                try:
                    yield url
                finally:
                    _drain()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _drain() -> None:
    """Deliver the logs and events still queued for the API before the server stops."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=10)


def _wait_healthy(proc: subprocess.Popen, url: str, log: IO[bytes]) -> None:
    timeout, t0 = startup_timeout(), time.monotonic()
    while not _healthy(url):
        if proc.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
            raise PrefectUnavailableError(
                f"the temporary Prefect server exited (code {proc.returncode}) before it was ready: "
                + " | ".join(tail)
                + '\nStart one with `alp stack up` and set PREFECT_API_URL (eval "$(alp stack env)").'
            )
        if time.monotonic() - t0 > timeout:
            raise PrefectUnavailableError(
                f"the temporary Prefect server did not answer within {timeout:.0f} s (is the machine very busy?). "
                f"Raise ${STARTUP_TIMEOUT_ENV}, or start a server (`alp stack up`) and set PREFECT_API_URL."
            )
        time.sleep(0.2)
