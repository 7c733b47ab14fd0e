"""The ``flagsock`` command line: every command's arguments, checked as they are parsed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent import __version__
from agent.cli import observe
from agent.cli.limits import add_limit_options, positive_seconds
from agent.engine.limits import LOAD_TIMEOUT
from protocol.messages import VALUE_TYPES

FRACTIONAL_VERSIONS = ("v1", "v2", "v3")
EPILOG = """exit status: 0 ok, 1 refused or invalid, 2 bad usage or configuration, 3 agent unreachable.
client commands find the agent with --socket, else $FLAGSOCK_SOCKET, else /run/flagsock/flagsock.sock.
docs: README.md and docs/protocol.md"""


def _json_arg(what: str):
    def parse(text: str) -> Any:
        if text.startswith("@"):
            try:
                with open(text[1:], "rb") as f:
                    text = f.read().decode()
            except OSError as exc:
                raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {exc.strerror or exc}") from None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{what} is not valid JSON ({exc})") from None

    return parse


def _json_object(what: str):
    inner = _json_arg(what)

    def parse(text: str) -> Any:
        value = inner(text)
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{what} must be a JSON object like '{{\"plan\": \"pro\"}}'")
        return value

    return parse


def _percentage(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rollout takes a number from 0 to 100, not {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"--rollout takes a number from 0 to 100, not {text}")
    return int(value) if value == int(value) else value


def _whole_number(minimum: int, what: str):
    """An argparse type: a whole number of at least ``minimum``, refused in terms of ``what``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what}, not {value}")
        return value

    return parse


_positive_int = _whole_number(1, "expected a whole number of at least 1")
_revision = _whole_number(0, "--if-revision takes a revision number")
#: serve's HTTP limits: option, type, metavar, help (HttpLimits' defaults, spelt out: importing it is slow).
HTTP_LIMITS = (
    ("--http-max-header-bytes", _positive_int, "N", "largest HTTP request head (default 16384); larger gets 431"),
    ("--http-max-body-bytes", _positive_int, "N", "largest HTTP request body (default 1048576); larger gets 413"),
    ("--http-header-timeout", float, "SECONDS", "time to send an HTTP request head (default 10); then 408"),
    ("--http-body-timeout", float, "SECONDS", "time to send an HTTP request body (default 30); then 408"),
    ("--http-idle-timeout", float, "SECONDS", "time a kept-alive HTTP connection may idle (default 75)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flagsock",
        description="A feature-flag agent: serves flagd-compatible flag files on a Unix socket.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"flagsock {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    serve = _serve_parser(sub)
    _offline_parsers(sub)
    client = _client_factory(sub)
    _client_parsers(client)
    observe.add_commands(sub, client, _json_object, _positive_int, serve)
    return parser


def _serve_parser(sub: Any) -> argparse.ArgumentParser:
    serve = sub.add_parser("serve", help="run the agent", epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Serve flag files on a Unix socket until SIGTERM or SIGINT; SIGHUP reloads.")
    serve.add_argument("--config", metavar="FILE", help="TOML file with any of these settings (the command line wins)")
    serve.add_argument("--flags", action="append", metavar="SOURCE",
                       help="a flag file (JSON or YAML), an http(s):// URL, or etcd://HOST:PORT[,HOST:PORT...]/PREFIX "
                            "(repeat for several; later ones win on a key)")
    serve.add_argument("--etcd-user", metavar="USER", help="etcd user for etcd:// sources (with --etcd-password-file)")
    serve.add_argument("--etcd-password-file", metavar="FILE", help="file holding the etcd user's password")
    serve.add_argument("--etcd-ca", metavar="FILE", help="CA certificate(s) to verify etcd with (switches etcd to https)")
    serve.add_argument("--etcd-cert", metavar="FILE", help="client certificate for etcd (with --etcd-key)")
    serve.add_argument("--etcd-key", metavar="FILE", help="key of the etcd client certificate")
    serve.add_argument("--context-value", "-X", action="append", metavar="KEY=VALUE",
                       help="add KEY to every evaluation context (repeatable; a request's own value wins), e.g. host=%%H")
    serve.add_argument("--poll-interval", type=float, metavar="SECONDS", help="seconds between fetches of an http(s) source (default 5)")
    serve.add_argument("--state-dir", metavar="DIR", help="where the change history and remote sources' last good versions are kept (default $STATE_DIRECTORY; without, history is in memory only)")
    serve.add_argument("--socket", metavar="PATH", help="where to listen (optional under systemd socket activation)")
    serve.add_argument("--socket-mode", metavar="MODE", help="permissions of the socket file, octal (default 0660)")
    serve.add_argument("--socket-group", metavar="GROUP", help="group of the socket file")
    serve.add_argument("--max-connections", type=_positive_int, metavar="N", help="connections served at once (default 1024); more get BUSY")
    serve.add_argument("--max-line-bytes", type=_positive_int, metavar="N", help="longest request line (default 1048576)")
    serve.add_argument("--fractional", choices=FRACTIONAL_VERSIONS, help="fractional bucketing: v2 as flagd "
                       "since v0.15 (default), v1 as flagd up to v0.14, v3 as openfeature-flagd-core 2.x")
    serve.add_argument("--invalid-flags", choices=["reject", "isolate"],
                       help="reject: a file with a broken flag is refused whole (default); isolate: broken flags answer PARSE_ERROR")
    serve.add_argument("--read-only", action="store_const", const=True, help="refuse set and delete")
    serve.add_argument("--write-to", metavar="PATH", help="with several --flags, the file that set and delete change")
    serve.add_argument("--allow-write", action="append", metavar="USER", help="a user who may set, delete and reload (repeatable)")
    serve.add_argument("--allow-write-group", action="append", metavar="GROUP", help="a group whose members may write (repeatable)")
    serve.add_argument("--log-format", choices=["auto", "text", "journal", "json"], help="default auto: journal under systemd, else text")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="default info")
    serve.add_argument("--http", action="append", metavar="ADDR",
                       help="also serve HTTP (OFREP, SSE, probes) on unix:PATH or HOST:PORT (repeatable)")
    serve.add_argument("--http-allow-remote", action="store_const", const=True,
                       help="allow an HTTP address that is not loopback, in --http or a socket systemd passes in "
                            "named http (the agent then answers other machines)")
    for option, kind, metavar, text in HTTP_LIMITS:
        serve.add_argument(option, type=kind, metavar=metavar, help=text)
    serve.add_argument("--shutdown-timeout", type=float, metavar="SECONDS", help="time in-flight requests get after SIGTERM (default 3)")
    add_limit_options(serve)
    serve.add_argument("--load-timeout", type=positive_seconds, metavar="SECONDS", help="a flag source still "
                       f"loading after this long is an error of that source (default {LOAD_TIMEOUT:g})")
    return serve


def _offline_parsers(sub: Any) -> None:
    """The commands that need no agent: validate and publish."""
    validate = sub.add_parser("validate", help="check flag files offline",
                              description="Check flag files without an agent. Exit 0 when all are valid, else 1 with one line per problem.")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.add_argument("--fractional", choices=FRACTIONAL_VERSIONS, default="v2", help="as for serve (default v2)")
    add_limit_options(validate)

    publish = sub.add_parser("publish", help="validate a flag file and write it into an etcd prefix",
                             description="Validate FILE and write its flags into the etcd prefix in one transaction "
                                         "(exit 0; 1 with one line per problem and nothing written; 3 etcd unreachable).")
    publish.add_argument("file", metavar="FILE")
    publish.add_argument("--to", required=True, metavar="etcd://HOST:PORT[,HOST:PORT...]/PREFIX")
    publish.add_argument("--prune", action="store_true", help="also delete the flags the file no longer has")
    publish.add_argument("--fractional", choices=FRACTIONAL_VERSIONS, default="v2")
    publish.add_argument("--etcd-user", metavar="USER")
    publish.add_argument("--etcd-password-file", metavar="FILE")
    publish.add_argument("--etcd-ca", metavar="FILE")
    publish.add_argument("--etcd-cert", metavar="FILE")
    publish.add_argument("--etcd-key", metavar="FILE")


def _client_factory(sub: Any) -> Any:
    def client(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help)
        p.add_argument("--socket", metavar="PATH", help="the agent's socket")
        p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="how long to wait for the agent (default 5)")
        return p

    return client


def _client_parsers(client: Any) -> None:
    """The commands that ask a running agent."""
    get = client("get", "print a flag's value for a user or context")
    get.add_argument("flag")
    get.add_argument("--user", metavar="ID", help="the targetingKey")
    get.add_argument("--context", type=_json_object("--context"), metavar="JSON", help="evaluation context, a JSON object (or @file)")
    get.add_argument("--type", choices=VALUE_TYPES, help="the value type you expect")
    get.add_argument("--default", type=_json_arg("--default"), metavar="JSON", help="value to use when the flag has none")
    get.add_argument("--json", action="store_true", help="print the whole result as JSON")

    flags = client("flags", "print every flag's value for a user or context")
    flags.add_argument("--user", metavar="ID")
    flags.add_argument("--context", type=_json_object("--context"), metavar="JSON")
    flags.add_argument("--json", action="store_true")

    for name, text in (("health", "show the agent's health"), ("stats", "show the agent's counters"),
                       ("ping", "check the agent answers"), ("reload", "make the agent re-read its flag files")):
        p = client(name, text)
        p.add_argument("--json", action="store_true")

    setp = client("set", "create or change a flag", "Create or change a flag; the answer comes once it is on disk.")
    setp.add_argument("flag")
    mode = setp.add_mutually_exclusive_group()
    mode.add_argument("--on", dest="enabled", action="store_const", const=True, help="turn the flag on")
    mode.add_argument("--off", dest="enabled", action="store_const", const=False, help="turn the flag off")
    mode.add_argument("--definition", type=_json_object("--definition"), metavar="JSON", help="a flagd flag object (or @file)")
    setp.add_argument("--rollout", type=_percentage, metavar="N", help="percentage of users who get it (0-100)")
    setp.add_argument("--allow", nargs="+", metavar="USER", help="users who always get it")
    setp.add_argument("--if-revision", type=_revision, metavar="N", help="only if the agent still serves revision N")

    delete = client("delete", "delete a flag")
    delete.add_argument("flag")
    delete.add_argument("--if-revision", type=_revision, metavar="N")

    watch = client("watch", "print a line for each change", "Subscribe and print a line per change event until interrupted.")
    watch.add_argument("--json", action="store_true", help="print the raw events")
