"""How an image pool's own files reach Label Studio (tasks/media.py): the mode chosen, signed URLs,
formats a browser cannot show, and S3 presigned URLs read back over HTTP from moto's server."""

from __future__ import annotations

import io
from urllib.parse import unquote, urlsplit

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image

from al_core.config import LabelStudioQueueParams
from al_core.errors import ConfigError
from tasks import media


def params(**kw) -> LabelStudioQueueParams:
    return LabelStudioQueueParams(**kw)


@pytest.mark.parametrize(
    ("kw", "uris", "mode"),
    [
        ({}, None, "inline"),  # built-in arrays: no files, always inline
        ({"media": "served", "media_url": "http://h:1"}, None, "inline"),
        ({}, ["/data/a.png"], "inline"),  # no address for alp, not on S3
        ({}, ["s3://b/a.png", "s3://b/c.png"], "presigned"),
        ({}, ["s3://b/a.png", "/data/c.png"], "inline"),
        ({"webhook_url": "http://127.0.0.1:8765/"}, ["/data/a.png"], "served"),
        ({"media_url": "http://10.0.0.2:8765"}, ["s3://b/a.png"], "served"),
        ({"media": "inline", "webhook_url": "http://127.0.0.1:8765/"}, ["/data/a.png"], "inline"),
        ({"media": "presigned"}, ["s3://b/a.png"], "presigned"),
    ],
)
def test_auto_serves_when_alps_address_is_known_else_presigns_s3_else_inline(kw, uris, mode):
    assert media.resolve_mode(params(**kw), uris) == mode


def test_the_media_address_is_media_url_else_the_webhooks_origin():
    assert media.media_base(params(webhook_url="http://127.0.0.1:8765/hook?x=1")) == "http://127.0.0.1:8765"
    assert media.media_base(params(media_url="https://alp.example.org/alp/", webhook_url="http://x:1/")) == (
        "https://alp.example.org/alp"
    )
    assert media.media_base(params()) is None


@pytest.mark.parametrize("sample_id", ["img-0001", "scan 7/a?b#c&d", "röntgen-ü"])
def test_a_served_url_names_the_sample_and_carries_its_signature(sample_id):
    url = urlsplit(media.served_url("http://127.0.0.1:8765/", sample_id, "s3cret"))
    assert url.path.startswith(media.MEDIA_PATH) and "/" not in url.path[len(media.MEDIA_PATH) :]
    assert unquote(url.path[len(media.MEDIA_PATH) :]) == sample_id
    sig = url.query.removeprefix("sig=")
    assert media.signed("s3cret", sample_id, sig)
    assert not media.signed("other", sample_id, sig)
    assert not media.signed("s3cret", sample_id + "x", sig)


def test_the_configured_mode_refuses_what_it_cannot_serve(tmp_path, monkeypatch):
    from al_core.workspace import Workspace

    def configure(**ls) -> Workspace:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({"queue": {"label_studio": ls}}))
        return Workspace(tmp_path)  # a workspace reads its params once

    ws = configure(media="served", media_url="http://h:1")
    monkeypatch.delenv(media.SECRET_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"signs its URLs with the webhook's secret: set {media.SECRET_ENV}"):
        media.image_sources(ws, ["a"], ["/data/a.png"])
    monkeypatch.setenv(media.SECRET_ENV, "k")
    got = media.image_sources(ws, ["a"], ["/data/a.png"])
    assert got.mode == "served" and got.urls == [media.served_url("http://h:1", "a", "k")]
    ws = configure(media="served")
    with pytest.raises(ConfigError, match=r"needs alp.s address: set queue\.label_studio\.media_url"):
        media.image_sources(ws, ["a"], ["/data/a.png"])
    ws = configure(media="presigned")
    with pytest.raises(ConfigError, match=r"presigned needs s3:// uris, but /data/a\.png is a local file"):
        media.image_sources(ws, ["a"], ["/data/a.png"])
    assert media.image_sources(ws, ["a"], None).urls is None  # not a uri pool: inline


def _png(arr: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def test_web_formats_go_as_they_are_and_others_as_an_8_bit_png_over_their_own_range():
    png = _png(np.arange(64, dtype=np.uint8).reshape(8, 8))
    assert media.web_image(png, "/x/a.png") == (png, "image/png")
    jpg = _png(np.full((8, 8, 3), 90, dtype=np.uint8), fmt="JPEG")
    assert media.web_image(jpg, "s3://b/a.JPG") == (jpg, "image/jpeg")
    scan = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 10 + 1000).astype(np.uint16)  # 1000..1630 of 65535
    for data, uri in ((_png(scan), "/x/scan.png"), (_png(scan, fmt="TIFF"), "/x/scan.tif")):
        out, kind = media.web_image(data, uri)
        shown = np.asarray(Image.open(io.BytesIO(out)))
        assert kind == "image/png" and shown.dtype == np.uint8 and shown.shape == (8, 8)
        assert shown.min() == 0 and shown.max() == 255  # the scan's own range, not 0..65535 (all black)
        assert np.all(np.diff(shown.reshape(-1).astype(int)) >= 0)  # order kept
    with pytest.raises(ValueError, match="not an image a browser or Pillow can show"):
        media.web_image(b"not an image", "/x/a.dcm")


def test_presigned_urls_read_the_object_without_credentials(s3_server):
    import boto3

    from tasks import s3

    client = boto3.client("s3")
    client.create_bucket(Bucket="scans")
    png = _png(np.eye(8, dtype=np.uint8) * 255)
    client.put_object(Bucket="scans", Key="ward 3/a.png", Body=png)
    url = s3.presigned_url("s3://scans/ward 3/a.png", 600)
    assert "Signature=" in url or "X-Amz-Signature=" in url
    got = httpx.get(url)  # no AWS headers: what the annotator's browser does
    assert got.status_code == 200 and got.content == png
    assert httpx.get(url.split("?")[0]).status_code == 403  # the bucket is not public: the signature matters
