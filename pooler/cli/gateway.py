"""Data-plane commands: `pooler envoy-config` (render envoy/envoy.yaml) and `pooler up` (every process, supervised)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pooler.envoy_config import ExtprocOptions
    from pooler.up import DatabaseRouting


def register(subparsers: Any) -> None:
    envoy = subparsers.add_parser(
        "envoy-config",
        help="render the Envoy config for this machine's ports and sockets",
        description=(
            "Renders envoy/envoy.yaml from POOLER_* ports/socket paths. The upstream defaults to the DB setting "
            "upstream_base_url and the retry count to the largest max_attempts of any pool; when the database "
            "cannot be read, https://chatgpt.com and 2 retries are used (with a warning)."
        ),
    )
    envoy.add_argument("--out", type=Path, help="write here instead of stdout")
    envoy.add_argument(
        "--fragments",
        type=Path,
        metavar="DIR",
        help="write the pieces for an Envoy you already run (clusters, http_filters, routes, local_reply, "
        "listeners, runtime, access_log: one YAML file each, see docs/INTEGRATION.md) instead of a whole config",
    )
    envoy.add_argument(
        "--istio",
        type=Path,
        metavar="DIR",
        help="write the Istio ingress-gateway manifests (Gateway, ServiceEntry/DestinationRule, EnvoyFilters, "
        "kustomization.yaml; see deploy/istio/README.md) instead of a whole config",
    )
    envoy.add_argument("--istio-host", default="pooler.example.com", help="the clients' host name (with --istio)")
    envoy.add_argument(
        "--local-socket",
        help="unix socket path of the internal gateway_local listener (default: $POOLER_DATA_DIR/gateway-local.sock)",
    )
    envoy.add_argument(
        "--upstream", help="upstream base URL (https://chatgpt.com, or http://127.0.0.1:N for the simulator)"
    )
    envoy.add_argument("--num-retries", type=int, help="Envoy retries per request (default: from the pools)")
    envoy.add_argument("--access-log", help="also write a metadata-only JSON access log to this path")
    add_extproc_arguments(envoy)
    envoy.set_defaults(func=_envoy_config)

    up = subparsers.add_parser(
        "up",
        help="start Envoy, ext_proc, admin and scheduler as one supervised group",
        description=(
            "Ensures the dev keyring, migrates the database, renders the Envoy config and runs every installed "
            "process with prefixed logs; a crashed process is restarted; Ctrl-C stops all. Prints a line "
            "starting with 'pooler ready:' and the client URLs once everything answers."
        ),
    )
    up.add_argument(
        "--demo",
        action="store_true",
        help="also start the Codex simulator with 3 accounts, seed a 'demo' pool and print a Pool key",
    )
    up.set_defaults(func=_up)


def add_extproc_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags saying where Envoy reaches the ext_proc (any rendering command; read with `extproc_options`)."""
    group = parser.add_argument_group(
        "ext_proc address",
        "Default: the unix sockets of POOLER_EXTPROC_SOCKET / POOLER_ACCESSLOG_SOCKET. Over TCP, point at the "
        "ext_proc's POOLER_EXTPROC_LISTEN (a DNS name such as a Kubernetes Service is resolved by Envoy).",
    )
    group.add_argument("--extproc", metavar="ADDR", help="host:port or unix:/path of the ext_proc")
    group.add_argument("--accesslog", metavar="ADDR", help="the gRPC access log receiver (default: --extproc)")
    group.add_argument(
        "--metrics",
        metavar="ADDR",
        help="the ext_proc's /metrics: its POOLER_METRICS_LISTEN (default: beside the socket, or port 9464 of a TCP "
        "--extproc host)",
    )
    group.add_argument("--extproc-tls-ca", metavar="FILE", help="TLS to the ext_proc: CA that signed its certificate")
    group.add_argument("--extproc-tls-cert", metavar="FILE", help="Envoy's client certificate (mTLS), with the key")
    group.add_argument("--extproc-tls-key", metavar="FILE", help="the client certificate's private key")
    group.add_argument("--extproc-tls-sni", metavar="NAME", help="SNI sent; the ext_proc's certificate must name it")


def extproc_options(args: argparse.Namespace) -> ExtprocOptions:
    """The ExtprocOptions of the flags `add_extproc_arguments` added."""
    from pooler.envoy_config import ExtprocOptions

    return ExtprocOptions(
        extproc=args.extproc,
        accesslog=args.accesslog,
        metrics=args.metrics,
        tls_ca=args.extproc_tls_ca,
        tls_cert=args.extproc_tls_cert,
        tls_key=args.extproc_tls_key,
        tls_sni=args.extproc_tls_sni,
    )


def _up(args: argparse.Namespace) -> int:
    from pooler.up import run_up

    return run_up(demo=bool(args.demo))


def _from_database(config: Any) -> DatabaseRouting | None:
    """What the config depends on in the database; None when it cannot be read."""
    from sqlalchemy.exc import SQLAlchemyError

    from pooler.errors import ConfigError
    from pooler.up import database_routing

    try:
        return database_routing(config)
    except (ConfigError, SQLAlchemyError):
        return None


def _envoy_config(args: argparse.Namespace) -> int:
    from pooler.cli.common import load_cli_config
    from pooler.envoy_config import (
        DEFAULT_UPSTREAM_URL,
        Endpoint,
        config_from_env,
        num_retries_for,
        render,
        with_extproc_options,
    )
    from pooler.envoy_config.fragments import render_fragments
    from pooler.errors import PoolerError

    config = load_cli_config()
    routing = None if args.upstream and args.num_retries is not None else _from_database(config)
    if routing is None and not args.upstream:
        print("pooler: warning: database not readable; using defaults for upstream and retries", file=sys.stderr)
    gateway = config_from_env(
        config,
        upstream_url=args.upstream or (routing.upstream if routing else None) or DEFAULT_UPSTREAM_URL,
        num_retries=args.num_retries
        if args.num_retries is not None
        else num_retries_for(routing.max_attempts if routing else []),
        access_log_path=args.access_log,
    )
    if routing is not None:
        gateway = dataclasses.replace(gateway, first_event_hold=routing.first_event_hold)
    if args.local_socket:
        gateway = dataclasses.replace(gateway, local=Endpoint.unix(args.local_socket))
    if args.istio:
        return _write_istio(args.istio, args.istio_host, gateway.upstream_url, gateway.num_retries)
    try:
        gateway = with_extproc_options(gateway, extproc_options(args))
        if args.fragments:
            fragments = render_fragments(gateway)
        else:
            text = render(gateway)
    except ValueError as exc:
        raise PoolerError(str(exc)) from None
    if args.fragments:
        return _write_files(args.fragments, fragments, "fragments", "docs/INTEGRATION.md")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _write_istio(directory: Path, host: str, upstream_url: str, num_retries: int) -> int:
    from pooler.envoy_config.istio import istio_gateway_config, render_istio

    try:
        files = render_istio(istio_gateway_config(upstream_url, num_retries), host)
    except ValueError as exc:
        print(f"pooler: {exc}", file=sys.stderr)
        return 1
    return _write_files(directory, files, "Istio manifests", "deploy/istio/README.md")


def _write_files(directory: Path, files: dict[str, str], what: str, guide: str) -> int:
    """Rendered files into `directory`; an unwritable directory is one line on stderr and exit code 1."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (directory / name).write_text(content)
    except OSError as exc:
        print(f"pooler: cannot write {what} to {directory}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {len(files)} {what} to {directory} (see {guide})")
    return 0
