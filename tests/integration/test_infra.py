"""infra/: the docker-compose deployment and the GPU work pool, checked for structure and for consistency
with the local stack (flows/stack.py). CI validates these files; it does not start them (Docker does not
run there)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from flows.stack import PG_DATABASES, TELEMETRY_OFF, Stack

INFRA = Path(__file__).resolve().parents[2] / "infra"
VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    lines = (INFRA / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def stack_client_env(tmp_path: Path) -> dict[str, str]:
    """What `alp stack env` exports (a config without running servers is enough to read it)."""
    stack = Stack(tmp_path / "stack")
    stack.state_dir.mkdir(parents=True)
    ports = {"postgres": 1, "s3": 2, "prefect": 3, "mlflow": 4}
    stack.config_path.write_text(json.dumps({"ports": ports, "bucket": "alp"}))
    return stack.client_env()


def test_services_and_dependencies(compose):
    services = compose["services"]
    assert {"postgres", "minio", "create-bucket", "prefect-server", "prefect-worker", "mlflow"} <= set(services)
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        if name != "create-bucket":
            assert "healthcheck" in svc or name == "prefect-worker", f"{name} has no healthcheck"
    assert services["postgres"]["image"] == "postgres:15"
    assert services["prefect-server"]["image"].startswith("prefecthq/prefect:3.8.8")


def test_ports_published_on_loopback_only(compose, env_example):
    published = {}
    for name, svc in compose["services"].items():
        for spec in svc.get("ports", []):
            host, host_port, container_port = spec.split(":")
            assert host == "127.0.0.1", f"{name} publishes {spec} beyond loopback"
            published[name] = (VAR.fullmatch(host_port).group(1), container_port)
    assert published["prefect-server"] == ("PREFECT_PORT", "4200")
    assert published["mlflow"] == ("MLFLOW_PORT", "5000")
    assert "postgres" not in published  # reached only inside the compose network


def test_every_variable_is_in_env_example_and_no_secret_is_inline(compose, env_example):
    text = (INFRA / "docker-compose.yml").read_text()
    used = set(VAR.findall(text))
    assert used <= set(env_example), f"missing from .env.example: {sorted(used - set(env_example))}"
    for svc in compose["services"].values():
        for key, value in (svc.get("environment") or {}).items():
            if "PASSWORD" in key or "SECRET" in key:
                assert VAR.fullmatch(str(value)), f"{key} must come from .env, not be written in the file"
    assert all("change-me" in v for k, v in env_example.items() if "PASSWORD" in k)


def test_servers_configured_like_the_local_stack(compose):
    services = compose["services"]
    prefect_env = services["prefect-server"]["environment"]
    assert prefect_env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert prefect_env["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("/prefect")
    mlflow = services["mlflow"]
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].endswith("/mlflow")
    assert mlflow["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    cmd = mlflow["command"]
    assert cmd[cmd.index("--workers") + 1] == "1"
    assert cmd[cmd.index("--artifacts-destination") + 1] == "s3://${ALP_S3_BUCKET}/mlflow"
    for name in ("prefect-server", "mlflow", "prefect-worker"):
        env = services[name]["environment"]
        assert {k: env[k] for k in TELEMETRY_OFF} == TELEMETRY_OFF, f"{name}: telemetry must be off"
    init_sql = (INFRA / "postgres" / "init-databases.sql").read_text()
    assert all(f"CREATE DATABASE {db};" in init_sql for db in PG_DATABASES)


def test_worker_gets_the_same_client_env_as_the_local_stack(compose, tmp_path):
    worker_env = compose["services"]["prefect-worker"]["environment"]
    assert set(stack_client_env(tmp_path)) == set(worker_env)
    assert worker_env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker_env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert worker_env["AWS_ENDPOINT_URL"] == "http://minio:9000"


def test_gpu_work_pool_template():
    template = json.loads((INFRA / "prefect" / "gpu-job-template.json").read_text())
    job = template["job_configuration"]["job_manifest"]
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    assert template["variables"]["properties"]["gpu_count"]["default"] == 1
    # every placeholder of the job configuration is a declared variable
    placeholders = set(re.findall(r"\{\{ (\w+) \}\}", json.dumps(template["job_configuration"])))
    assert placeholders <= set(template["variables"]["properties"])
    assert "AWS_SECRET_ACCESS_KEY" not in json.dumps(template["variables"]["properties"]["env"]["default"])
    deployments = yaml.safe_load((INFRA / "prefect" / "prefect.yaml").read_text())["deployments"]
    pools = {d["name"]: d["work_pool"]["name"] for d in deployments}
    assert pools["round-gpu"] == "alp-gpu"
    for d in deployments:
        module, func = d["entrypoint"].split(":")
        assert (INFRA.parent / module).is_file() and f"def {func}(" in (INFRA.parent / module).read_text()
