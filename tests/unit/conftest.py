"""Fixtures of the unit tests that need a real endpoint."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def s3_server(monkeypatch):
    """moto's S3 in server mode on 127.0.0.1 (a real HTTP endpoint for boto3)."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    yield
    server.stop()
