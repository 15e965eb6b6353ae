"""How an image pool's own files reach the annotator's browser in Label Studio
(``queue.label_studio.media``).

Built-in arrays (digits, MNIST) have no files: their tasks carry an inline PNG of the sample. A uri
pool (``dataset: images``: local files or ``s3://`` objects) can show the annotator the original file
(full resolution, the format the team knows) instead of the decoded model input:

- **served**: ``alp webhook`` serves each queued sample's file at
  ``<media_url>/media/<sample_id>?sig=<hmac>``. The signature is an HMAC of the sample id under the
  webhook's secret (``ALP_WEBHOOK_SECRET``), so only the URLs alp put in tasks open anything, and only
  samples of an exported batch are served, by id (never a path from the request). Formats a browser
  cannot show (TIFF, 16-bit PNG, ...) are sent as 8-bit PNGs. Works for local and ``s3://`` uris, and
  Label Studio needs neither credentials nor a storage set up.
- **presigned**: ``s3://`` uris become S3 presigned GET URLs (``presign_expiry_s``, at most 7 days);
  the browser reads S3 directly. Tasks older than that show a broken image: re-export or use served.
- **inline**: the decoded sample as a PNG inside the task (what the model sees).
- **auto** (default): served when alp's address is known (``media_url``, else ``webhook_url``'s origin),
  else presigned when every uri is ``s3://``, else inline.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import mimetypes
import os
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import numpy as np

from al_core.config import LabelStudioQueueParams
from al_core.errors import ConfigError
from al_core.workspace import Workspace

SECRET_ENV = "ALP_WEBHOOK_SECRET"
MEDIA_PATH = "/media/"
#: what browsers show as they are; anything else is sent as PNG
WEB_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/svg+xml", "image/avif"}
)


def signature(secret: str, sample_id: str) -> str:
    """The ``sig`` of a served sample's URL: HMAC-SHA256 of its id under the webhook secret (hex, 128 bits)."""
    return hmac.new(secret.encode(), b"alp-media:" + sample_id.encode(), hashlib.sha256).hexdigest()[:32]


def signed(secret: str, sample_id: str, sig: str) -> bool:
    return hmac.compare_digest(signature(secret, sample_id), sig)


def served_url(base: str, sample_id: str, secret: str) -> str:
    return f"{base.rstrip('/')}{MEDIA_PATH}{quote(sample_id, safe='')}?sig={signature(secret, sample_id)}"


def media_base(p: LabelStudioQueueParams) -> str | None:
    """Where browsers reach ``alp webhook``: ``media_url``, else the origin of ``webhook_url``."""
    if p.media_url:
        return p.media_url.rstrip("/")
    if p.webhook_url:
        u = urlsplit(p.webhook_url)
        return f"{u.scheme}://{u.netloc}"
    return None


def resolve_mode(p: LabelStudioQueueParams, uris: list[str] | None) -> str:
    """The media mode for a batch with these ``uris`` (None: not a uri pool, always inline)."""
    if uris is None or p.media == "inline":
        return "inline"
    if p.media != "auto":
        return p.media
    if media_base(p):
        return "served"
    return "presigned" if uris and all(u.startswith("s3://") for u in uris) else "inline"


@dataclass(frozen=True)
class ImageSources:
    """The task ``image`` value of each sample of a batch, and how it was made."""

    mode: str
    urls: list[str] | None  # None: inline PNGs of the decoded samples


def image_sources(ws: Workspace, sample_ids: list[str], uris: list[str] | None) -> ImageSources:
    """What Label Studio's ``<Image>`` loads for each sample (see the module doc); raises ConfigError
    when the configured mode cannot serve these samples."""
    p = ws.params.queue.label_studio
    mode = resolve_mode(p, uris)
    if mode == "inline" or uris is None:
        return ImageSources("inline", None)
    if mode == "served":
        base = media_base(p)
        secret = os.environ.get(SECRET_ENV, "").strip()
        if not base:
            raise ConfigError(
                "queue.label_studio.media = served needs alp's address: set queue.label_studio.media_url "
                "(where the annotators' browsers reach `alp webhook`, e.g. http://127.0.0.1:8765) or webhook_url"
            )
        if not secret:
            raise ConfigError(
                f"queue.label_studio.media = served signs its URLs with the webhook's secret: set {SECRET_ENV} "
                "(the same one `alp webhook` reads)"
            )
        return ImageSources(mode, [served_url(base, sid, secret) for sid in sample_ids])
    local = [u for u in uris if not u.startswith("s3://")]
    if local:
        raise ConfigError(
            f"queue.label_studio.media = presigned needs s3:// uris, but {local[0]} is a local file: use "
            "media: served (alp webhook serves it) or inline"
        )
    from tasks import s3

    return ImageSources(mode, [s3.presigned_url(u, p.presign_expiry_s) for u in uris])


def to_pixels(values: np.ndarray, stretch: bool = True) -> np.ndarray:
    """8-bit pixels of an image's values: stretched over their own range (a flat image is black);
    with ``stretch=False`` values already in [0, 1] are kept as they are (only others are stretched)."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    if stretch or lo < 0.0 or hi > 1.0:
        values = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def web_image(data: bytes, uri: str) -> tuple[bytes, str]:
    """(bytes, content type) a browser shows: the file as it is when it is a web format, else an
    8-bit PNG of it (TIFF, 16-bit or float images scaled to their own range). Raises ValueError
    when Pillow cannot read it."""
    kind = mimetypes.guess_type(uri)[0] or ""
    if kind in WEB_TYPES and not _sixteen_bit_png(data):
        return data, kind
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:  # Pillow raises many kinds for a file it cannot decode
        raise ValueError(f"{uri}: not an image a browser or Pillow can show ({type(exc).__name__}: {exc})") from exc
    if img.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
        img = Image.fromarray(to_pixels(np.asarray(img, dtype=np.float64)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), "image/png"


def _sixteen_bit_png(data: bytes) -> bool:
    """A PNG of 16 bits per channel (IHDR bit depth): browsers show it, but medical scans often use
    a narrow part of the range, so it is rescaled like a TIFF."""
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24 and data[24] == 16
