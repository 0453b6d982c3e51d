"""The ext_proc's network variables (POOLER_EXTPROC_LISTEN, POOLER_EXTPROC_TLS_*, POOLER_METRICS_LISTEN): parsed and
checked by load_config with every problem at once; the PEM files checked by read_server_tls; a bad file stops
`python -m extproc` with one line and no traceback, before the database is opened."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from pooler.config import ListenAddress, ServerTls, load_config, read_server_tls
from pooler.crypto.keyring import new_key_material
from pooler.errors import ConfigError
from tests.support.processes import REPO_ROOT, VENV_BIN, free_port
from tests.support.tls import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(env)
    return info.value.problems


def test_unset_means_unix_sockets_only() -> None:
    config = load_config({})
    assert config.extproc_listen is None and config.extproc_tls is None and config.metrics_listen is None
    assert config.extproc_socket == Path("var/extproc.sock")


def test_listen_addresses_parse() -> None:
    config = load_config({"POOLER_EXTPROC_LISTEN": "0.0.0.0:9000", "POOLER_METRICS_LISTEN": "[::]:9464"})
    assert config.extproc_listen == ListenAddress("0.0.0.0", 9000)
    assert config.metrics_listen == ListenAddress("::", 9464)
    assert config.metrics_listen.target == "[::]:9464"
    assert load_config({"POOLER_EXTPROC_LISTEN": "pooler-extproc:9000"}).extproc_listen == ListenAddress(
        "pooler-extproc", 9000
    )


def test_tls_variables_parse(pki: Pki) -> None:
    config = load_config(
        {
            "POOLER_EXTPROC_LISTEN": "127.0.0.1:9000",
            "POOLER_EXTPROC_TLS_CERT": str(pki.server_cert),
            "POOLER_EXTPROC_TLS_KEY": str(pki.server_key),
            "POOLER_EXTPROC_TLS_CLIENT_CA": str(pki.ca_cert),
        }
    )
    assert config.extproc_tls == ServerTls(pki.server_cert, pki.server_key, pki.ca_cert)


def test_every_bad_variable_is_reported_at_once() -> None:
    problems = _problems(
        {
            "POOLER_EXTPROC_LISTEN": "9000",
            "POOLER_METRICS_LISTEN": "::1:9464",
            "POOLER_EXTPROC_TLS_CERT": "/etc/pooler/tls.crt",
            "POOLER_LISTEN_PORT": "http",
        }
    )
    assert len(problems) == 4, problems
    joined = " | ".join(problems)
    for name in ("POOLER_EXTPROC_LISTEN", "POOLER_METRICS_LISTEN", "POOLER_LISTEN_PORT"):
        assert name in joined
    assert "POOLER_EXTPROC_TLS_CERT and POOLER_EXTPROC_TLS_KEY must be set together" in joined


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"POOLER_EXTPROC_LISTEN": "127.0.0.1:0"}, "POOLER_EXTPROC_LISTEN must be host:port"),
        ({"POOLER_EXTPROC_LISTEN": "127.0.0.1:70000"}, "POOLER_EXTPROC_LISTEN must be host:port"),
        ({"POOLER_EXTPROC_LISTEN": ":9000"}, "POOLER_EXTPROC_LISTEN must be host:port"),
        ({"POOLER_EXTPROC_TLS_KEY": "/k"}, "must be set together"),
        (
            {"POOLER_EXTPROC_LISTEN": "127.0.0.1:9000", "POOLER_EXTPROC_TLS_CLIENT_CA": "/ca"},
            "POOLER_EXTPROC_TLS_CLIENT_CA needs POOLER_EXTPROC_TLS_CERT",
        ),
        (
            {"POOLER_EXTPROC_TLS_CERT": "/c", "POOLER_EXTPROC_TLS_KEY": "/k"},
            "POOLER_EXTPROC_TLS_CERT needs POOLER_EXTPROC_LISTEN",
        ),
    ],
)
def test_invalid_combinations(env: dict[str, str], expected: str) -> None:
    problems = _problems(env)
    assert len(problems) == 1 and expected in problems[0], problems


def test_tls_files_are_read_and_checked(pki: Pki, tmp_path: Path) -> None:
    material = read_server_tls(ServerTls(pki.server_cert, pki.server_key, pki.ca_cert))
    assert material.cert_chain == pki.server_cert.read_bytes()
    assert material.client_ca == pki.ca_cert.read_bytes()
    assert "PRIVATE KEY" not in repr(material)  # the key never reaches a log line by repr

    not_pem = tmp_path / "junk.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as info:
        read_server_tls(ServerTls(not_pem, pki.server_cert, tmp_path / "missing.pem"))
    problems = sorted(info.value.problems)
    assert len(problems) == 3, problems
    assert problems[0] == f"POOLER_EXTPROC_TLS_CERT: {not_pem} holds no PEM certificate"
    assert problems[1].startswith(f"POOLER_EXTPROC_TLS_CLIENT_CA: cannot read {tmp_path / 'missing.pem'} (")
    assert problems[2] == f"POOLER_EXTPROC_TLS_KEY: {pki.server_cert} is not an unencrypted PEM private key"

    with pytest.raises(ConfigError, match="is not the key of the certificate"):
        read_server_tls(ServerTls(pki.server_cert, pki.client_key))


def test_extproc_with_a_bad_certificate_stops_with_one_line(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "tls.crt"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOLER_", "DATABASE_URL"))}
    env.update(
        POOLER_DATA_DIR=str(tmp_path),
        # Never reached: the certificate is read first, so an unreachable database cannot mask the error.
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        POOLER_EXTPROC_LISTEN="127.0.0.1:9000",
        POOLER_EXTPROC_TLS_CERT=str(junk),
        POOLER_EXTPROC_TLS_KEY=str(pki.server_key),
    )
    proc = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "extproc"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"extproc: invalid configuration: POOLER_EXTPROC_TLS_CERT: {junk} holds no PEM certificate"]
    assert "BEGIN" not in proc.stderr


@pytest.mark.parametrize("variable", ["POOLER_EXTPROC_LISTEN", "POOLER_METRICS_LISTEN"])
def test_extproc_on_a_busy_port_names_the_variable(variable: str, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = f"127.0.0.1:{busy.getsockname()[1]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POOLER_", "DATABASE_URL"))}
        env.update(
            POOLER_DATA_DIR=str(tmp_path),
            POOLER_SECRET_KEYS=f"t1:{new_key_material()}",
            POOLER_KEY_PEPPER=new_key_material(),
            POOLER_EXTPROC_LISTEN=f"127.0.0.1:{free_port()}",
        )
        env[variable] = taken
        proc = subprocess.run(
            [str(VENV_BIN / "python"), "-m", "extproc"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    # grpc's C core may log its own bind line first; ours is the last, naming the variable to change.
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(f"extproc: invalid configuration: {variable}: cannot listen on {taken}")
    )
