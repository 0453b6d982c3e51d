"""pooler/gateway/files.py: upload-URL safety (what the gateway refuses to hand a client) and file-id helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pooler.gateway.files import (
    MAX_FILE_IDS,
    file_hash,
    file_id_from_path,
    file_ids_from_metadata,
    upload_url_problem,
    valid_file_id,
)

SAFE = [
    "https://files.example.com/upload/abc?sig=x&exp=1",
    "https://storage.googleapis.com/bucket/obj",
    "https://oaiusercontent.blob.core.windows.net/files/file_1?se=2026",
    "https://8.8.8.8/upload",
    "https://[2606:4700:4700::1111]/upload",
    "https://files.example.com:8443/x",
    "https://FILES.Example.COM./x",  # case and a trailing dot are the same public name
    "https://xn--80ak6aa92e.com/x",  # punycode: what a resolver sees, a public name
]


@pytest.mark.parametrize("url", SAFE)
def test_public_https_urls_pass(url: str) -> None:
    assert upload_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://files.example.com/x", "not https"),
        ("ftp://files.example.com/x", "not https"),
        ("javascript:alert(1)", "not https"),
        ("//files.example.com/x", "not https"),
        ("files.example.com/x", "not https"),
        ("HTTPS://files.example.com/x", None),  # urlsplit lowercases the scheme: still https
        ("https:///x", "no host"),
        ("https://user@files.example.com/x", "carries credentials"),
        ("https://user:pw@files.example.com/x", "carries credentials"),
        ("https://:pw@files.example.com/x", "carries credentials"),
        ("https://files.example.com@evil.example/x", "carries credentials"),
        ("https://files.example.com:99999/x", "malformed URL"),
        ("https://[::1/x", "malformed URL"),
    ],
)
def test_scheme_credentials_and_malformed(url: str, reason: str | None) -> None:
    assert upload_url_problem(url) == reason


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/x",
        "https://LOCALHOST./x",
        "https://api.localhost/x",
        "https://printer.local/x",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://router.lan/x",
        "https://nas.home.arpa/x",
        "https://box.localdomain/x",
        "https://intranet/x",  # single label: resolved by search domains, never public
    ],
)
def test_local_host_names(url: str) -> None:
    assert upload_url_problem(url) == "local host name"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://127.255.255.254/x",
        "https://10.0.0.1/x",
        "https://172.16.5.4/x",
        "https://192.168.1.1/x",
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "https://100.64.0.1/x",  # carrier-grade NAT
        "https://0.0.0.0/x",
        "https://224.0.0.1/x",  # multicast
        "https://255.255.255.255/x",
        "https://[::1]/x",
        "https://[::]/x",
        "https://[fe80::1]/x",
        "https://[fe80::1%25eth0]/x",
        "https://[fc00::1]/x",
        "https://[fd00:ec2::254]/x",  # AWS metadata over IPv6 (unique local)
        "https://[::ffff:127.0.0.1]/x",  # IPv4-mapped loopback
        "https://[::ffff:169.254.169.254]/x",
        "https://[ff02::1]/x",
    ],
)
def test_non_public_addresses(url: str) -> None:
    assert upload_url_problem(url) == "non-public address"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # IDN tricks: what a client's IDNA/UTS46 mapping turns into a local target.
        ("https://１２７.０.０.１/x", "non-public address"),  # fullwidth digits and dots
        ("https://１２７.0.0.1/x", "non-public address"),
        ("https://ⓛocalhost/x", "local host name"),  # circled letter
        ("https://foo.ⓛocal/x", "local host name"),
        ("https://local\u200bhost/x", "local host name"),  # zero-width space removed by nameprep
        ("https://ｍｅｔａｄａｔａ.google.internal/x", "local host name"),
        # IPv4 in forms inet_aton accepts but ipaddress does not.
        ("https://127.1/x", "non-canonical IP address"),
        ("https://0x7f.1/x", "non-canonical IP address"),
        ("https://0177.0.0.1/x", "non-canonical IP address"),
        ("https://0x7f000001.example.0x1/x", "non-canonical IP address"),
        ("https://2130706433/x", "local host name"),  # one label: refused as a single-label name already
    ],
)
def test_idn_and_numeric_tricks(url: str, reason: str) -> None:
    assert upload_url_problem(url) == reason


@pytest.mark.parametrize(
    "value", [None, 42, b"https://x.example/", ["https://x.example/"], "https://x.example/" + "a" * 5000]
)
def test_non_strings_and_huge_urls(value: object) -> None:
    assert upload_url_problem(value) == "not a string URL"


@given(st.text(max_size=300))
def test_never_raises(text: str) -> None:
    result = upload_url_problem(text)
    assert result is None or isinstance(result, str)


@given(st.from_regex(r"\Ahttps://[a-z0-9.\-]{1,40}(:[0-9]{1,5})?/[a-z0-9/]{0,20}\Z"))
def test_fuzzed_https_urls_never_raise(url: str) -> None:
    result = upload_url_problem(url)
    assert result is None or isinstance(result, str)


def test_file_ids_from_paths_and_metadata() -> None:
    assert file_id_from_path("/backend-api/files/file_abc-1/uploaded") == "file_abc-1"
    assert file_id_from_path("/backend-api/files/file_abc") == "file_abc"
    assert file_id_from_path("/backend-api/files") is None
    assert file_id_from_path("/backend-api/files/../x") is None
    assert file_id_from_path("/backend-api/filesX/abc") is None
    assert file_ids_from_metadata(None) == [] and file_ids_from_metadata("") == []
    assert file_ids_from_metadata("a,b,a,bad id,c") == ["a", "b", "c"]
    many = ",".join(f"f{i}" for i in range(MAX_FILE_IDS + 5))
    assert len(file_ids_from_metadata(many)) == MAX_FILE_IDS
    assert valid_file_id("file-" + "x" * 123) and not valid_file_id("x" * 129) and not valid_file_id("")


def test_file_hash_is_keyed_per_pool() -> None:
    from pooler.crypto.hashing import KeyedHasher

    hasher = KeyedHasher(b"k" * 32)
    assert file_hash(hasher, 1, "file_a") == file_hash(hasher, 1, "file_a")
    assert file_hash(hasher, 1, "file_a") != file_hash(hasher, 2, "file_a")
    assert "file_a" not in file_hash(hasher, 1, "file_a")
