"""Transcription and images through the real data path (simulator backend)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pooler.audit import SYSTEM
from pooler.settings import set_setting
from tests.support.gateway import Gateway, SeededPool, running_gateway
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration
AUDIO = b"RIFF" + b"\x00" * 2000


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("media")) as gateway:
        yield gateway


def _auth(seeded: SeededPool) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.key}"}


def _journal(gw: Gateway, route: str) -> dict[str, object]:
    entries = [e for e in gw.simulator.client.journal() if e["route"] == route]
    assert entries
    return entries[-1]


def test_transcription_backend_and_v1_with_size_limit(gw: Gateway) -> None:
    seeded = gw.seed_pool("media-tr", ["acct-t1"])
    r = httpx.post(f"{gw.url}/backend-api/transcribe", files={"file": ("a.wav", AUDIO)}, headers=_auth(seeded))
    assert r.status_code == 200, r.text
    assert r.json()["text"].startswith("simulated transcription")
    entry = _journal(gw, "transcribe")
    assert entry["account"] == "acct-t1" and entry["authorization"] == f"Bearer {seeded.tokens['acct-t1']}"

    v1 = httpx.post(
        f"{gw.url}/v1/audio/transcriptions",
        files={"file": ("a.wav", AUDIO)},
        data={"model": "whisper-1", "temperature": "0.2", "language": "en"},
        headers=_auth(seeded),
    )
    assert v1.status_code == 200, v1.text
    assert v1.json()["text"].startswith("simulated transcription")
    assert _journal(gw, "transcribe")["note"] == "fields=language,file"  # model alias and extras removed
    unknown = httpx.post(
        f"{gw.url}/v1/audio/transcriptions",
        files={"file": ("a.wav", AUDIO)},
        data={"model": "tts-1"},
        headers=_auth(seeded),
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"

    gw.update(lambda s: set_setting(s, "transcription_max_bytes", 1000, actor=SYSTEM))

    def too_large() -> bool:
        r = httpx.post(f"{gw.url}/backend-api/transcribe", files={"file": ("a.wav", AUDIO)}, headers=_auth(seeded))
        return r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    wait_until(too_large, timeout=15, what="transcription size limit")
    gw.update(lambda s: set_setting(s, "transcription_max_bytes", 26214400, actor=SYSTEM))


def test_images_gated_per_pool(gw: Gateway) -> None:
    off = gw.seed_pool("media-img-off", ["acct-i1"])
    on = gw.seed_pool("media-img-on", ["acct-i2"], image_generation_enabled=True)
    body = {"model": "gpt-image-1", "prompt": "a red square"}
    for path in ("/backend-api/images/generations", "/v1/images/generations"):
        denied = httpx.post(f"{gw.url}{path}", json=body, headers=_auth(off), timeout=20)
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "image_generation_disabled"
        allowed = httpx.post(f"{gw.url}{path}", json=body, headers=_auth(on), timeout=20)
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["data"][0]["b64_json"]
        assert _journal(gw, "images")["account"] == "acct-i2"
    edit = httpx.post(
        f"{gw.url}/v1/images/edits", files={"image": ("i.png", b"\x89PNG")}, data={"prompt": "x"}, headers=_auth(on)
    )
    assert edit.status_code == 200, edit.text
