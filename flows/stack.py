"""``alp stack``: alp's real services on this machine, without Docker (DESIGN §7).

``alp stack up`` starts, bound to 127.0.0.1 and in this order:

- **postgres**: a PostgreSQL cluster (Debian's ``postgresql``, installed with apt-get when missing), run as
  the ``postgres`` user when started by root, with one database for Prefect and one for MLflow;
- **s3**: an S3 endpoint (moto's server mode). Every request that changes state is recorded in the state
  directory and replayed when the endpoint starts again, so the bucket survives a restart like the databases
  do (not objects uploaded in several parts, i.e. over 8 MB from boto3: their replay finds no upload);
- **prefect**: ``prefect server start`` on PostgreSQL;
- **mlflow**: ``mlflow server`` on PostgreSQL, artifacts proxied to ``s3://BUCKET/mlflow``.

It waits until each one answers, then prints the URLs and the environment to export. Everything lives in
one state directory (``--state-dir``, default ``./.stack``): data, logs, ``stack.json`` (ports, URLs) and
one pid file per service. ``alp stack down`` stops, by PID, only what that directory's ``up`` started.
Ports are free ones picked at first start (or given), then kept, so the URLs stay the same across restarts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import psutil
import typer

from al_core.errors import ALError
from al_core.workspace import atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SERVICES = ("postgres", "s3", "prefect", "mlflow")
DEFAULT_BUCKET = "alp"
PG_USER = "alp"
PG_DATABASES = ("prefect", "mlflow")
REGION = "us-east-1"
# moto accepts any credentials; these name the local stack and are no secret.
ACCESS_KEY_ID = "alp-local"
SECRET_ACCESS_KEY = "alp-local-secret"
TELEMETRY_OFF = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
# Debian's postgresql package creates and starts a cluster of its own unless told not to.
CREATECLUSTER_DROPIN = Path("/etc/postgresql-common/createcluster.d/alp-no-main-cluster.conf")


class StackError(ALError):
    """The local stack cannot start, or is not in the state a command needs."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port_open(port: int, timeout: float) -> bool:
    """Poll until something listens on ``port`` (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port, timeout=1.0):
            return True
        time.sleep(0.3)
    return False


def http_ok(url: str, timeout: float = 2.0, method: str = "GET") -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


# ------------------------------------------------------------------------------------------ PostgreSQL install
def postgres_bindir() -> Path | None:
    """The bin directory of the newest installed PostgreSQL server (15 preferred, Debian layout)."""
    root = Path("/usr/lib/postgresql")
    found = sorted(
        (p for p in root.glob("*/bin") if (p / "postgres").is_file() and (p / "initdb").is_file()),
        key=lambda p: (p.parent.name != "15", -int(p.parent.name) if p.parent.name.isdigit() else 0),
    )
    if found:
        return found[0]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "postgres").is_file():
            return Path(out)
    return None


def install_postgres(log_path: Path) -> Path:
    """Install Debian's postgresql with apt-get (without its default cluster); return the bin directory."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/postgres). Install them with "
            "`sudo apt-get update && sudo apt-get install -y postgresql`, then run `alp stack up` again."
        )
    CREATECLUSTER_DROPIN.parent.mkdir(parents=True, exist_ok=True)
    CREATECLUSTER_DROPIN.write_text(
        "# written by alp stack: it runs clusters of its own\ncreate_main_cluster = false\n"
    )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]):
            log.info("installing PostgreSQL: %s", " ".join(cmd))
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode:
                raise StackError(f"`{' '.join(cmd)}` failed: see {log_path}. Install postgresql by hand and retry.")
    bindir = postgres_bindir()
    if bindir is None:
        raise StackError(f"postgresql was installed but no server binaries were found: see {log_path}")
    return bindir


# ------------------------------------------------------------------------------------------------ S3 (moto)
def keep_complete_lines(path: Path) -> None:
    """Drop a recording's last line if a crash cut it short (moto's replay stops at the first bad line)."""
    if not path.exists():
        path.touch()
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        atomic_write_bytes(path, data[: data.rfind(b"\n") + 1])


def serve_s3(host: str, port: int) -> None:
    """moto's server, recording only the requests that change state, one whole line at a time.

    moto appends each request to its recording from whichever server thread handles it; requests
    that arrive together (MLflow uploads artifacts in parallel) could interleave their lines, and a
    replay stops at the first bad one. Reads change nothing, so they are not recorded at all.
    """
    import threading

    from moto.moto_api._internal.recorder.models import Recorder
    from moto.server import main

    lock = threading.Lock()
    record = Recorder._record_request

    def record_writes(self: Recorder, request: Any, body: bytes | None = None) -> None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return
        with lock:
            record(self, request, body)

    Recorder._record_request = record_writes  # type: ignore[method-assign]
    main(["-H", host, "-p", str(port)])


# ------------------------------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class RunAs:
    """Who a service process runs as: the current user, or (when root) an unprivileged one."""

    uid: int | None = None
    gid: int | None = None
    home: str | None = None

    @classmethod
    def for_postgres(cls) -> RunAs:
        if os.geteuid() != 0:
            return cls()
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise StackError(
                "PostgreSQL refuses to run as root and there is no `postgres` user: install Debian's postgresql "
                "package (it creates the user) or run `alp stack up` as an unprivileged user"
            ) from None
        return cls(pw.pw_uid, pw.pw_gid, pw.pw_dir)

    def popen_kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.gid if self.gid is not None else -1)

    def can_reach(self, path: Path) -> bool:
        if self.uid is None:
            return True
        res = subprocess.run(["test", "-x", str(path)], check=False, **self.popen_kwargs())
        return res.returncode == 0


class Stack:
    """The services of one state directory: start, check, stop (by PID)."""

    def __init__(self, state_dir: str | Path):
        self.state_dir = Path(state_dir).expanduser().resolve()

    # ----------------------------------------------------------------- paths and config
    @property
    def config_path(self) -> Path:
        return self.state_dir / "stack.json"

    def pid_path(self, name: str) -> Path:
        return self.state_dir / "pids" / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def password_path(self) -> Path:
        return self.state_dir / "secrets" / "postgres-password"

    @property
    def recording_path(self) -> Path:
        return self.state_dir / "s3" / "recording.jsonl"

    @property
    def env_path(self) -> Path:
        return self.state_dir / "env.sh"

    def config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            raise StackError(
                f"no stack in {self.state_dir}: start one with `alp stack up --state-dir {self.state_dir}`."
            )
        return json.loads(self.config_path.read_text())

    def port(self, name: str) -> int:
        return int(self.config()["ports"][name])

    @property
    def bucket(self) -> str:
        return str(self.config()["bucket"])

    def url(self, name: str) -> str:
        port = self.port(name)
        return {
            "postgres": f"postgresql://{HOST}:{port}",
            "s3": f"http://{HOST}:{port}",
            "prefect": f"http://{HOST}:{port}/api",
            "mlflow": f"http://{HOST}:{port}",
        }[name]

    def ui_urls(self) -> dict[str, str]:
        return {"prefect": f"http://{HOST}:{self.port('prefect')}", "mlflow": self.url("mlflow")}

    def postgres_url(self, database: str, driver: str = "postgresql") -> str:
        """A connection URL with the stack's password: for the servers and for tests, never printed."""
        password = self.password_path.read_text().strip()
        return f"{driver}://{PG_USER}:{password}@{HOST}:{self.port('postgres')}/{database}"

    def client_env(self) -> dict[str, str]:
        """What a client of the stack exports: no database password, S3 credentials moto accepts."""
        return {
            "PREFECT_API_URL": self.url("prefect"),
            "MLFLOW_TRACKING_URI": self.url("mlflow"),
            "AWS_ENDPOINT_URL": self.url("s3"),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "ALP_S3_BUCKET": self.bucket,
            **TELEMETRY_OFF,
        }

    def env_script(self) -> str:
        return "".join(f"export {k}={v}\n" for k, v in self.client_env().items())

    # ------------------------------------------------------------------ pid files
    def read_pid(self, name: str) -> psutil.Process | None:
        """The live process a pid file names (checked against its start time: a reused PID is not ours)."""
        path = self.pid_path(name)
        if not path.exists():
            return None
        lines = path.read_text().split()
        try:
            proc = psutil.Process(int(lines[0]))
            if len(lines) > 1 and abs(proc.create_time() - float(lines[1])) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except (psutil.NoSuchProcess, ValueError, IndexError):
            return None
        return proc

    def _write_pid(self, name: str, pid: int) -> None:
        create_time = psutil.Process(pid).create_time()
        atomic_write_text(self.pid_path(name), f"{pid}\n{create_time}\n")

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str], run_as: RunAs | None = None) -> subprocess.Popen:
        log_path = self.log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.state_dir,
                start_new_session=True,  # its own process group: stopped as one, never by our terminal
                **(run_as.popen_kwargs() if run_as else {}),
            )
        self._write_pid(name, proc.pid)
        return proc

    def _wait(self, name: str, proc: subprocess.Popen, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"{name} exited with code {proc.returncode} while starting:\n{self.log_tail(name)}")
            if ready():
                return
            time.sleep(0.25)
        raise StackError(
            f"{name} did not become ready within {timeout:.0f}s (log: {self.log_path(name)}):\n{self.log_tail(name)}"
        )

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_path(name)
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------ the services
    def _base_env(self) -> dict[str, str]:
        # the servers get exactly what they need: no client settings of the caller leak in
        drop = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "AWS_PROFILE")
        return {k: v for k, v in os.environ.items() if k not in drop} | TELEMETRY_OFF

    def start_postgres(self, timeout: float) -> None:
        bindir = postgres_bindir() or install_postgres(self.log_path("apt"))
        run_as = RunAs.for_postgres()
        if not self.password_path.exists():
            self.password_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write_text(self.password_path, secrets.token_urlsafe(24) + "\n")
            os.chmod(self.password_path, 0o600)
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pg_dir, 0o700)
        run_as.chown(self.pg_dir)
        if not run_as.can_reach(self.pg_dir):
            raise StackError(
                f"the postgres user cannot reach {self.pg_dir}: one of its parent directories is closed to other "
                "users. Pick a --state-dir whose parents are world-traversable (chmod o+x), e.g. under /tmp."
            )
        env = self._base_env() | ({"HOME": run_as.home} if run_as.home else {})
        if not (self.pg_data / "PG_VERSION").exists():
            pwfile = self.pg_dir / ".pwfile"
            pwfile.write_text(self.password_path.read_text())
            os.chmod(pwfile, 0o600)
            run_as.chown(pwfile)
            cmd = [str(bindir / "initdb"), "-D", str(self.pg_data), "-U", PG_USER, f"--pwfile={pwfile}"]
            cmd += ["-A", "scram-sha-256", "-E", "UTF8", "--locale=C"]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, **run_as.popen_kwargs())
            finally:
                pwfile.unlink(missing_ok=True)
            if res.returncode:
                raise StackError(f"initdb failed in {self.pg_data}: {res.stderr.strip() or res.stdout.strip()}")
        port = self.port("postgres")
        cmd = [str(bindir / "postgres"), "-D", str(self.pg_data), "-h", HOST, "-p", str(port)]
        # TCP on loopback only; a crash may lose the last transactions, never corrupt the cluster
        cmd += ["-c", "unix_socket_directories=", "-c", "synchronous_commit=off", "-c", "max_connections=200"]
        proc = self._spawn("postgres", cmd, env, run_as)
        self._wait("postgres", proc, self._postgres_ready, timeout)
        self._create_databases()

    def _connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(self.postgres_url(database), connect_timeout=3, autocommit=True)

    def _postgres_ready(self) -> bool:
        import psycopg

        if not port_open(self.port("postgres")):
            return False
        try:
            with self._connect() as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def _create_databases(self) -> None:
        with self._connect() as conn:
            have = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for db in PG_DATABASES:
                if db not in have:
                    conn.execute(f'CREATE DATABASE "{db}"')

    def start_s3(self, timeout: float) -> None:
        self.recording_path.parent.mkdir(parents=True, exist_ok=True)
        keep_complete_lines(self.recording_path)
        env = self._base_env() | {
            "MOTO_ENABLE_RECORDING": "true",
            "MOTO_RECORDER_FILEPATH": str(self.recording_path),
        }
        port = self.port("s3")
        proc = self._spawn("s3", [sys.executable, "-m", "flows.stack", "serve-s3", HOST, str(port)], env)
        self._wait("s3", proc, lambda: port_open(port), timeout)
        # replay what the endpoint held before it stopped (the replay itself is not recorded again)
        replay = f"{self.url('s3')}/moto-api/recorder/replay-recording"
        if not http_ok(replay, timeout=max(60.0, timeout), method="POST"):
            raise StackError(
                f"s3: replaying {self.recording_path} failed (log: {self.log_path('s3')}). Move the recording "
                "away to start with an empty bucket."
            )
        self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.url("s3"),
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        )
        if self.bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=self.bucket)

    def _prefect_cmd(self) -> tuple[list[str], dict[str, str]]:
        home = self.state_dir / "prefect"
        home.mkdir(parents=True, exist_ok=True)
        env = self._base_env() | {
            "PREFECT_HOME": str(home),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.postgres_url("prefect", "postgresql+asyncpg"),
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        }
        port = self.port("prefect")
        return [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)], env

    def _mlflow_cmd(self) -> tuple[list[str], dict[str, str]]:
        env = self._base_env() | {
            # the store URI holds the password: through the environment, not the command line. The driver is
            # named: SQLAlchemy 2.0 defaults postgresql:// to psycopg2, 2.1 to psycopg (3), which alp installs.
            "MLFLOW_BACKEND_STORE_URI": self.postgres_url("mlflow", "postgresql+psycopg"),
            "MLFLOW_S3_ENDPOINT_URL": self.url("s3"),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        port = self.port("mlflow")
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(port), "--workers", "1"]
        cmd += ["--artifacts-destination", f"s3://{self.bucket}/mlflow"]
        return cmd, env

    def _ready(self, name: str) -> Callable[[], bool]:
        return {
            "postgres": self._postgres_ready,
            "s3": lambda: port_open(self.port("s3")),
            "prefect": lambda: http_ok(f"{self.url('prefect')}/health"),
            "mlflow": lambda: http_ok(f"{self.url('mlflow')}/health"),
        }[name]

    def start_service(self, name: str, timeout: float = 180.0) -> None:
        """Start one service (the ones it needs must be running); a running one is left as it is."""
        if self.read_pid(name) is not None:
            return
        if name == "postgres":
            self.start_postgres(timeout)
        elif name == "s3":
            self.start_s3(timeout)
        else:
            self._start_servers([name], timeout)

    def _start_servers(self, names: list[str], timeout: float) -> None:
        """Start Prefect and/or MLflow side by side (each takes seconds to import), then wait for each."""
        started = []
        for name in names:
            if self.read_pid(name) is None:
                cmd, env = self._prefect_cmd() if name == "prefect" else self._mlflow_cmd()
                started.append((name, self._spawn(name, cmd, env)))
        for name, proc in started:
            self._wait(name, proc, self._ready(name), timeout)

    # ------------------------------------------------------------------ up / down / status
    def up(
        self, ports: dict[str, int | None] | None = None, bucket: str | None = None, timeout: float = 180.0
    ) -> float:
        """Start every service that is not running; return the seconds it took."""
        t0 = time.perf_counter()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        old = json.loads(self.config_path.read_text()) if self.config_path.exists() else {}
        chosen: dict[str, int] = {}
        for name in SERVICES:
            wanted = (ports or {}).get(name) or old.get("ports", {}).get(name)
            if wanted and self.read_pid(name) is None and port_open(int(wanted)):
                if (ports or {}).get(name):
                    raise StackError(f"port {wanted} for {name} is taken on {HOST}: pick another --{name}-port")
                wanted = None  # the port we had is taken by now: pick a new one
            chosen[name] = int(wanted) if wanted else free_port()
        config = {"ports": chosen, "bucket": bucket or old.get("bucket") or DEFAULT_BUCKET, "host": HOST}
        atomic_write_json(self.config_path, config)
        steps: dict[str, float] = {}
        try:
            for step, start in (
                ("postgres", lambda: self.start_service("postgres", timeout)),
                ("s3", lambda: self.start_service("s3", timeout)),
                ("prefect+mlflow", lambda: self._start_servers(["prefect", "mlflow"], timeout)),
            ):
                t = time.perf_counter()
                start()
                steps[step] = round(time.perf_counter() - t, 2)
        except BaseException:
            self.down()
            raise
        seconds = time.perf_counter() - t0
        atomic_write_text(self.env_path, self.env_script())
        timing = {"startup_seconds": round(seconds, 2), "startup_steps": steps}
        atomic_write_json(self.config_path, {**config, "urls": self.ui_urls(), **timing})
        return seconds

    def stop_service(self, name: str, kill: bool = False, timeout: float = 30.0) -> bool:
        """Stop one service by the PID in its pid file (``kill``: SIGKILL at once, as a crash would)."""
        proc = self.read_pid(name)
        path = self.pid_path(name)
        if proc is None:
            path.unlink(missing_ok=True)
            return False
        # postgres: SIGINT is its "fast" shutdown; the others stop on SIGTERM. Each leads its own group.
        sig = signal.SIGKILL if kill else (signal.SIGINT if name == "postgres" else signal.SIGTERM)
        members = [proc, *proc.children(recursive=True)]
        try:
            if name == "postgres":  # the postmaster stops its own backends
                proc.send_signal(sig)
            else:
                os.killpg(proc.pid, sig)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
        _, alive = psutil.wait_procs(members, timeout=timeout)
        for p in alive:  # whatever ignored the signal
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        path.unlink(missing_ok=True)
        return True

    def down(self) -> list[str]:
        """Stop every service this state directory started, in reverse order; return the ones stopped."""
        return [name for name in reversed(SERVICES) if self.stop_service(name)]

    def status(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        have_config = self.config_path.exists()
        for name in SERVICES:
            proc = self.read_pid(name)
            out[name] = {
                "pid": proc.pid if proc else None,
                "running": proc is not None,
                "healthy": bool(proc and have_config and self._ready(name)()),
                "url": self.url(name) if have_config else None,
            }
        return out


# ------------------------------------------------------------------------------------------------- the CLI
stack_app = typer.Typer(
    help="A local stack of alp's real services without Docker: PostgreSQL, S3 (moto), Prefect and MLflow servers.",
    no_args_is_help=True,
)
StateDir = Annotated[
    Path,
    typer.Option("--state-dir", envvar="ALP_STACK_DIR", help="Where the stack keeps data, logs and pid files."),
]
DEFAULT_STATE_DIR = Path(".stack")


def _fail(exc: BaseException) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


#: The stack's servers need packages a plain ``pip install alp`` leaves out: the ``stack`` extra.
STACK_MODULES = {"moto": "moto[server]", "psycopg": "psycopg[binary]"}


def missing_stack_packages() -> list[str]:
    import importlib.util

    return [pkg for mod, pkg in STACK_MODULES.items() if importlib.util.find_spec(mod) is None]


@stack_app.command()
def up(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    postgres_port: Annotated[int, typer.Option(help="0 = a free port (kept across restarts).")] = 0,
    s3_port: Annotated[int, typer.Option(help="0 = a free port (kept across restarts).")] = 0,
    prefect_port: Annotated[int, typer.Option(help="0 = a free port (kept across restarts).")] = 0,
    mlflow_port: Annotated[int, typer.Option(help="0 = a free port (kept across restarts).")] = 0,
    bucket: Annotated[str | None, typer.Option(help=f"The S3 bucket (default: {DEFAULT_BUCKET}).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds each service may take to become ready.")] = 180.0,
) -> None:
    """Start the stack (what already runs is kept), wait until each service answers, print the env to export."""
    missing = missing_stack_packages()
    if missing:
        _fail(StackError(f"alp stack needs {', '.join(missing)}: install the extra with `pip install 'alp[stack]'`"))
    stack = Stack(state_dir)
    ports = {"postgres": postgres_port, "s3": s3_port, "prefect": prefect_port, "mlflow": mlflow_port}
    try:
        seconds = stack.up({k: v or None for k, v in ports.items()}, bucket, timeout)
    except ALError as exc:
        _fail(exc)
    took = stack.config().get("startup_steps", {})
    steps = ", ".join(f"{k} {took[k]:.1f}s" for k in ("postgres", "s3", "prefect+mlflow") if k in took)
    typer.echo(f"alp stack up in {seconds:.1f}s ({steps}; state: {stack.state_dir})")
    for name, info in stack.status().items():
        typer.echo(f"  {name:8s} pid {info['pid']}  {info['url']}")
    ui = stack.ui_urls()
    typer.echo(f"Prefect UI: {ui['prefect']}\nMLflow UI:  {ui['mlflow']}")
    typer.echo(f"\nexport these (or `source {stack.env_path}`):\n{stack.env_script()}")


@stack_app.command()
def down(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Stop, by PID, every service this state directory's `up` started (the data stays for the next `up`)."""
    stopped = Stack(state_dir).down()
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack_app.command()
def status(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each service: its PID, whether it runs and answers, its URL. Exit code 1 unless all are healthy."""
    data = Stack(state_dir).status()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        for name, info in data.items():
            state = "healthy" if info["healthy"] else ("running, not answering" if info["running"] else "stopped")
            typer.echo(f"{name:8s} {state:24s} pid {info['pid']}  {info['url'] or ''}")
    if not all(info["healthy"] for info in data.values()):
        raise typer.Exit(1)


@stack_app.command()
def env(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Print the exports a client of the stack needs: `eval "$(alp stack env)"`."""
    try:
        typer.echo(Stack(state_dir).env_script(), nl=False)
    except ALError as exc:
        _fail(exc)


if __name__ == "__main__":  # the S3 endpoint's process: python -m flows.stack serve-s3 HOST PORT
    if sys.argv[1:2] != ["serve-s3"] or len(sys.argv) != 4:
        sys.exit("usage: python -m flows.stack serve-s3 HOST PORT (alp stack up runs it)")
    serve_s3(sys.argv[2], int(sys.argv[3]))
