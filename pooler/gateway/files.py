"""File affinity and upload-URL safety (pure functions; the ext_proc holds the pins in memory).

An upstream file lives in the account that created it: a later request naming its id (the finalize path, or an
`input_file`/`input_image` part of a responses body) must go to that account. Ids are kept only as a keyed hash
per pool, like session ids.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from pooler.crypto.hashing import KeyedHasher

FILE_PURPOSE = "file"
FILES_PREFIX = "/backend-api/files"
MAX_FILE_IDS = 16
"""References per request the gateway pins by (more are ignored: bounded work per request)."""
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".localdomain")
# A last label that is a number (decimal, octal, hex): an IPv4 address in a form `ipaddress` does not parse but
# resolvers (inet_aton) do - `127.1`, `0x7f.1`, `0177.0.0.1`. No public name has a numeric top-level label.
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


def file_hash(hasher: KeyedHasher, pool_id: int, file_id: str) -> str:
    return hasher.hexdigest(FILE_PURPOSE, f"{pool_id}\x00{file_id}")


def valid_file_id(value: str) -> bool:
    return bool(_ID.match(value))


def file_id_from_path(path: str) -> str | None:
    """`/backend-api/files/{id}` and anything below it (`/uploaded`); None for the create path."""
    if not path.startswith(FILES_PREFIX + "/"):
        return None
    candidate = path[len(FILES_PREFIX) + 1 :].split("/", 1)[0]
    return candidate if valid_file_id(candidate) else None


def file_ids_from_metadata(value: str | None) -> list[str]:
    """The comma-separated ids the Envoy Lua scanner found in a JSON body (pooler/envoy_config/lua/request_scan.lua)."""
    if not value:
        return []
    ids = [v for v in value.split(",") if valid_file_id(v)]
    return list(dict.fromkeys(ids))[:MAX_FILE_IDS]


def upload_url_problem(url: object) -> str | None:
    """Why an upload URL from the upstream must not reach the client (None = fine).

    https only, no credentials, a host name or a public IP; loopback, private, link-local, reserved and
    single-label/local-only names are refused. Names are not resolved: the gateway never fetches the URL, it
    only refuses to hand clients an address that points into their own network."""
    if not isinstance(url, str) or len(url) > 4096:
        return "not a string URL"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        return "malformed URL"
    if parts.scheme != "https":
        return "not https"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "carries credentials"
    if not host:
        return "no host"
    try:
        # What a client would resolve: IDNA/nameprep maps fullwidth digits and dots, circled letters, zero-width
        # characters... onto ASCII (`１２７.0.0.1` -> 127.0.0.1, `ⓛocalhost` -> localhost).
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return "malformed host name"
    host = host.rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if "." not in host or host == "localhost" or host.endswith(_BLOCKED_SUFFIXES):
            return "local host name"
        if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
            return "non-canonical IP address"
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        return "non-public address"
    return None
