"""TLS and user identity options shared by the CLI commands. Secrets never
go on the command line unless the user insists: a passcode or token comes
from an environment variable or a file, and is never printed.

May import the public `tls` and `identity` modules, `protocol/` names and
the CLI's output.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

    from asyncecho.cli.output import CliLog
    from asyncecho.protocol.pdu_items import UserIdentityRQ


def add_client_tls_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "TLS Options", "DICOM over TLS (PS3.15 Annex B; the usual port is 2762)"
    )
    group.add_argument(
        "--tls",
        action="store_true",
        help="use TLS; the peer's certificate is verified against --ca-file "
        "(or the system's trusted CAs) and its host name",
    )
    group.add_argument(
        "+tls",
        "--enable-tls",
        dest="tls_key_cert",
        nargs=2,
        metavar=("KEY", "CERT"),
        help="use TLS with this private key and certificate (DCMTK style)",
    )
    group.add_argument(
        "+cf",
        "--ca-file",
        dest="ca_file",
        metavar="FILE",
        help="trust the CA certificates in FILE (PEM)",
    )
    group.add_argument("--cert", metavar="FILE", help="our certificate (PEM; may hold the key too)")
    group.add_argument("--key", metavar="FILE", help="our private key (PEM)")
    group.add_argument(
        "--no-hostname-check",
        action="store_true",
        help="verify the certificate chain but not that it names the peer",
    )
    group.add_argument(
        "-ic",
        "--ignore-peer-cert",
        action="store_true",
        help="INSECURE: accept any certificate from anyone (lab use only)",
    )


def add_identity_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "User Identity Options", "user identity negotiation (PS3.7 D.3.3.7)"
    )
    group.add_argument("--username", metavar="NAME", help="send this username")
    group.add_argument(
        "--passcode-env", metavar="VAR", help="read the passcode from environment variable VAR"
    )
    group.add_argument(
        "--passcode-file", metavar="FILE", help="read the passcode from FILE (first line)"
    )
    group.add_argument(
        "--jwt-env", metavar="VAR", help="send the JSON Web Token in environment variable VAR"
    )
    group.add_argument("--jwt-file", metavar="FILE", help="send the JSON Web Token in FILE")
    group.add_argument(
        "--positive-response",
        action="store_true",
        help="ask the peer to confirm the identity (positive response requested)",
    )


class OptionError(Exception):
    """A bad option value found after parsing (exit 2)."""


def _secret(env: str | None, path: str | None, what: str) -> str | None:
    if env and path:
        raise OptionError(f"give the {what} once: an environment variable or a file, not both")
    if env:
        value = os.environ.get(env)
        if value is None:
            raise OptionError(f"environment variable {env} (the {what}) is not set")
        return value
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.readline().rstrip("\r\n")
        except OSError as exc:
            raise OptionError(f"cannot read the {what} from {path}: {exc.strerror}") from None
    return None


def identity_from(args: argparse.Namespace) -> UserIdentityRQ | None:
    from asyncecho.identity import user_identity

    passcode = _secret(args.passcode_env, args.passcode_file, "passcode")
    jwt = _secret(args.jwt_env, args.jwt_file, "JSON Web Token")
    if passcode is not None and not args.username:
        raise OptionError("a passcode needs --username")
    if args.username and jwt:
        raise OptionError("give --username or a JSON Web Token, not both")
    if not args.username and not jwt:
        if args.positive_response:
            raise OptionError(
                "--positive-response needs an identity (--username or a JSON Web Token)"
            )
        return None
    try:
        if jwt:
            return user_identity(jwt=jwt, positive_response=args.positive_response)
        return user_identity(
            username=args.username, passcode=passcode, positive_response=args.positive_response
        )
    except ValueError as exc:
        raise OptionError(str(exc)) from None


def client_ssl_from(args: argparse.Namespace, log: CliLog) -> ssl.SSLContext | None:
    import ssl

    from asyncecho.tls import client_context

    cert, key = args.cert, args.key
    if args.tls_key_cert:
        key, cert = args.tls_key_cert
    wants_tls = args.tls or args.tls_key_cert or args.ca_file or cert or args.ignore_peer_cert
    if not wants_tls:
        if args.no_hostname_check:
            raise OptionError("--no-hostname-check needs TLS (--tls)")
        return None
    if key and not cert:
        raise OptionError("--key needs --cert")
    if args.ignore_peer_cert:
        warning = "TLS peer verification is OFF (--ignore-peer-cert): anyone can pose as this peer"
        if log.enabled_for("warning"):
            log.say("warning", warning)
        elif log.enabled_for("error"):
            # Loud at the default level (errors only) too: only -q hides it.
            print(f"W: {warning}", file=log.stream, flush=True)
    try:
        return client_context(
            ca_file=args.ca_file,
            cert_file=cert,
            key_file=key,
            check_hostname=not args.no_hostname_check,
            insecure_skip_verify=args.ignore_peer_cert,
        )
    except (OSError, ssl.SSLError) as exc:
        raise OptionError(
            f"cannot load the TLS files: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def add_server_tls_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS Options", "DICOM over TLS (PS3.15 Annex B)")
    group.add_argument(
        "+tls",
        "--enable-tls",
        dest="tls_key_cert",
        nargs=2,
        metavar=("KEY", "CERT"),
        help="accept TLS only, with this private key and certificate",
    )
    group.add_argument(
        "+cf",
        "--ca-file",
        dest="ca_file",
        metavar="FILE",
        help="trust client certificates issued by the CAs in FILE (PEM)",
    )
    group.add_argument(
        "--require-peer-cert",
        action="store_true",
        help="mutual TLS: refuse clients without a certificate from --ca-file",
    )


def server_ssl_from(args: argparse.Namespace) -> ssl.SSLContext | None:
    import ssl

    from asyncecho.tls import server_context

    if not args.tls_key_cert:
        if args.ca_file or args.require_peer_cert:
            raise OptionError("--ca-file and --require-peer-cert need +tls KEY CERT")
        return None
    key, cert = args.tls_key_cert
    try:
        return server_context(
            cert_file=cert,
            key_file=key,
            ca_file=args.ca_file,
            require_client_cert=args.require_peer_cert,
        )
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    except (OSError, ssl.SSLError) as exc:
        raise OptionError(
            f"cannot load the TLS files: {getattr(exc, 'strerror', None) or exc}"
        ) from None
