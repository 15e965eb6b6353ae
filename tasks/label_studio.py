"""Label Studio's REST API, as far as alp needs it (httpx): projects, tasks, annotations, webhooks,
exports, and naming annotators.

The address is ``queue.label_studio.url`` or ``ALP_LABEL_STUDIO_URL`` (e.g. ``http://127.0.0.1:8080``);
the API key comes from the environment only, ``ALP_LABEL_STUDIO_TOKEN``: a legacy token (Account &
Settings → Legacy Token) or a personal access token (a JWT refresh token, exchanged for an access token
through ``/api/token/refresh``). It is never logged or written.

Label Studio's webhook payloads and default JSON exports name an annotation's author by numeric
user id (``completed_by: 7``); alp records annotators by e-mail or username: ``ls-user-<id>`` is
resolved once per process through ``GET /api/users/<id>``; when Label Studio cannot be asked it stays
``ls-user-<id>``.

Errors: :class:`LabelStudioUnavailableError` (transient: connection refused or reset, timeouts, 5xx, 429)
and :class:`LabelStudioError` (fix something first: the token refused, a project that does not exist).
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

import httpx

from al_core.errors import ALError

log = logging.getLogger(__name__)

URL_ENV, TOKEN_ENV = "ALP_LABEL_STUDIO_URL", "ALP_LABEL_STUDIO_TOKEN"
USER_RE = re.compile(r"^ls-user-(\d+)$")
RETRY_AFTER_S = 60.0
_names: dict[tuple[str, str], str] = {}
_failed: dict[tuple[str, str], float] = {}  # not asked again for RETRY_AFTER_S (one warning, not one per label)


class LabelStudioError(ALError):
    """A Label Studio request failed in a way a retry will not fix."""


class LabelStudioUnavailableError(LabelStudioError):
    """Label Studio could not be reached or answered a transient error (5xx, 429): retry later."""


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, LabelStudioUnavailableError | httpx.TransportError)


class Client:
    """A Label Studio API client for ``url`` with ``token`` (legacy token or personal access token)."""

    def __init__(self, url: str, token: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self._token = token
        self._auth: str | None = None
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _authorization(self) -> str:
        if self._auth is None:
            if self._token.count(".") == 2:  # a personal access token (JWT refresh token)
                access = self._send("POST", "/api/token/refresh", {"refresh": self._token}, auth=False)
                self._auth = f"Bearer {access['access']}"
            else:
                self._auth = f"Token {self._token}"
        return self._auth

    def _send(self, method: str, path: str, body: Any = None, params: Any = None, auth: bool = True) -> Any:
        headers = {"Authorization": self._authorization()} if auth else {}
        where = f"Label Studio at {self.url} ({method} {path})"
        try:
            resp = self._http.request(method, path, json=body, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise LabelStudioUnavailableError(
                f"{where}: not reachable ({type(exc).__name__}: {exc}). Start it or fix queue.label_studio.url / "
                f"{URL_ENV}, then retry."
            ) from exc
        if resp.status_code >= 500 or resp.status_code == 429:
            raise LabelStudioUnavailableError(f"{where}: answered {resp.status_code}; retry when it is back")
        if resp.status_code in (401, 403):
            raise LabelStudioError(
                f"{where}: the API key is refused ({resp.status_code}): set {TOKEN_ENV} to a token of a user of "
                "this Label Studio (Account & Settings → Legacy Token or Personal Access Token)"
            )
        if resp.status_code >= 400:
            raise LabelStudioError(f"{where}: answered {resp.status_code}: {resp.text[:300]}")
        return resp.json() if resp.content else None

    def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        """One API request; JSON in and out."""
        return self._send(method, path, body, params)

    def pages(self, path: str, key: str, params: dict[str, Any] | None = None, page_size: int = 500) -> list[Any]:
        """Every item of a paginated list (``{"<key>": [...], ...}`` or a bare list)."""
        out: list[Any] = []
        page = 1
        while True:
            try:
                got = self.call("GET", path, params={**(params or {}), "page": page, "page_size": page_size})
            except LabelStudioError as exc:
                if page > 1 and "404" in str(exc):  # past the last page
                    return out
                raise
            items = got.get(key, []) if isinstance(got, dict) else got
            out.extend(items)
            total = got.get("total") if isinstance(got, dict) else None
            if not isinstance(got, dict) or len(items) < page_size or (total is not None and len(out) >= total):
                return out
            page += 1


def env_client(url: str | None = None) -> Client | None:
    """A client from ``url`` (else ``ALP_LABEL_STUDIO_URL``) and ``ALP_LABEL_STUDIO_TOKEN``; None without both."""
    url = (url or os.environ.get(URL_ENV, "")).strip()
    token = os.environ.get(TOKEN_ENV, "").strip()
    return Client(url, token, timeout=5.0) if url and token else None


def user_name(user_id: str, url: str | None = None) -> str | None:
    """The e-mail (else username) of Label Studio user ``user_id``, or None when it cannot be asked."""
    client = env_client(url)
    if client is None:
        return None
    key = (client.url, user_id)
    with client:
        if key not in _names:
            if time.monotonic() - _failed.get(key, -RETRY_AFTER_S) < RETRY_AFTER_S:
                return None
            try:
                user = client.call("GET", f"/api/users/{int(user_id)}")
            except (LabelStudioError, ValueError) as exc:
                _failed[key] = time.monotonic()
                log.warning("Label Studio user %s not resolved (kept as ls-user-%s): %s", user_id, user_id, exc)
                return None
            name = (user.get("email") or user.get("username") or "").strip() if isinstance(user, dict) else ""
            if not name:
                return None
            _names[key] = name
    return _names[key]


def resolve_annotators(annotators: list[str], url: str | None = None) -> list[str]:
    """``annotators`` with each ``ls-user-<id>`` replaced by that user's e-mail where it can be asked."""
    out = []
    for who in annotators:
        m = USER_RE.match(str(who))
        out.append((user_name(m.group(1), url) or who) if m else who)
    return out
