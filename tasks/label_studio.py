"""Label Studio's REST API, as far as alp needs it: naming annotators.

Label Studio's webhook payloads and default JSON exports name an annotation's author by numeric
user id (``completed_by: 7``); alp records annotators by e-mail or username. With
``ALP_LABEL_STUDIO_URL`` (e.g. ``http://127.0.0.1:8080``) and ``ALP_LABEL_STUDIO_TOKEN`` (an access
token of a Label Studio user who may list the organisation's members: Account & Settings → Legacy
Token) in the environment, ``ls-user-<id>`` is resolved once per process through
``GET /api/users/<id>``; without them, or when Label Studio does not answer, it stays ``ls-user-<id>``.
The token is read from the environment only and never logged or written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger(__name__)

URL_ENV, TOKEN_ENV = "ALP_LABEL_STUDIO_URL", "ALP_LABEL_STUDIO_TOKEN"
USER_RE = re.compile(r"^ls-user-(\d+)$")
RETRY_AFTER_S = 60.0
_names: dict[tuple[str, str], str] = {}
_failed: dict[tuple[str, str], float] = {}  # not asked again for RETRY_AFTER_S (one warning, not one per label)


def _get(url: str, token: str, path: str, timeout: float = 5.0) -> Any:
    req = urllib.request.Request(url.rstrip("/") + path, headers={"Authorization": f"Token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def user_name(user_id: str) -> str | None:
    """The e-mail (else username) of Label Studio user ``user_id``, or None when it cannot be asked."""
    url, token = os.environ.get(URL_ENV, "").strip(), os.environ.get(TOKEN_ENV, "").strip()
    if not url or not token:
        return None
    key = (url, user_id)
    if key not in _names:
        if time.monotonic() - _failed.get(key, -RETRY_AFTER_S) < RETRY_AFTER_S:
            return None
        try:
            user = _get(url, token, f"/api/users/{int(user_id)}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            _failed[key] = time.monotonic()
            log.warning("Label Studio user %s not resolved at %s (kept as ls-user-%s): %s", user_id, url, user_id, exc)
            return None
        name = (user.get("email") or user.get("username") or "").strip() if isinstance(user, dict) else ""
        if not name:
            return None
        _names[key] = name
    return _names[key]


def resolve_annotators(annotators: list[str]) -> list[str]:
    """``annotators`` with each ``ls-user-<id>`` replaced by that user's e-mail where it can be asked."""
    out = []
    for who in annotators:
        m = USER_RE.match(str(who))
        out.append((user_name(m.group(1)) or who) if m else who)
    return out
