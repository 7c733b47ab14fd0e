"""The ``flagsock`` command: run the agent, check flag files, and talk to a running agent.

Exit status: 0 success; 1 the agent (or the validator) refused; 2 a bad command line or
configuration; 3 the agent could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from typing import Any

from agent import __version__
from protocol.messages import VALUE_TYPES
from agent.cli import observe
from agent.cli.transport import CliError, events, request, socket_path

#: agent.engine.rules.fractional.VERSIONS, spelt out: importing the engine would slow every client command.
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

    validate = sub.add_parser("validate", help="check flag files offline",
                              description="Check flag files without an agent. Exit 0 when all are valid, else 1 with one line per problem.")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.add_argument("--fractional", choices=FRACTIONAL_VERSIONS, default="v2", help="as for serve (default v2)")

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

    def client(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help)
        p.add_argument("--socket", metavar="PATH", help="the agent's socket")
        p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="how long to wait for the agent (default 5)")
        return p

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
    observe.add_commands(sub, client, _json_object, _positive_int, serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "set" and args.enabled is None and args.definition is None:
        # `set --rollout 50` alone is a common wish: a rollout or allow-list means "on".
        if args.rollout is None and args.allow is None:
            parser.error("set needs one of --on, --off, --definition, or --rollout / --allow (which mean --on)")
        args.enabled = True
    try:
        return (COMMANDS.get(args.command) or observe.COMMANDS[args.command])(args)
    except CliError as exc:
        print(f"flagsock {args.command}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import agent.host.logs as logs
    from agent.config import build_config, is_remote, parse_mode, settings_from_toml
    from agent.host.errors import StartupError

    try:
        file_settings = settings_from_toml(args.config) if args.config else {}
        cli = {
            # The settings the command line gives as they are (None: not given).
            **{name: getattr(args, name) for name in _PLAIN_SETTINGS},
            "flags": tuple(p if is_remote(p) else os.path.abspath(p) for p in args.flags) if args.flags else None,
            "socket_mode": parse_mode(args.socket_mode) if args.socket_mode is not None else None,
            "write_to": (args.write_to if is_remote(args.write_to) else os.path.abspath(args.write_to))
            if args.write_to else None,
            "allow_write": tuple(args.allow_write) if args.allow_write else None,
            "allow_write_group": tuple(args.allow_write_group) if args.allow_write_group else None,
            "context_values": tuple(args.context_value) if args.context_value else None,
            "state_dir": os.path.abspath(args.state_dir) if args.state_dir else None,
            **{name: os.path.abspath(value) if value else None
               for name in ("etcd_password_file", "etcd_ca", "etcd_cert", "etcd_key")
               for value in [getattr(args, name)]},
            "http": tuple(args.http) if args.http else None,
        }
        config = build_config(file_settings, cli)
    except StartupError as exc:
        print(f"flagsock serve: {exc}", file=sys.stderr)
        return 2
    if not config.flags:
        print("flagsock serve: no flag files: pass --flags PATH or --flags etcd://HOST:PORT/PREFIX "
              "(or flags = [...] in --config)", file=sys.stderr)
        return 2
    logs.configure_logging(config.log_format, config.log_level)
    raise_open_file_limit(config.max_connections)
    import trio

    from agent.daemon import run_agent

    try:
        trio.run(run_agent, config)
    except StartupError as exc:  # raised before anything was bound or loaded
        print(f"flagsock serve: {exc}", file=sys.stderr)
        return 2
    return 0


_PLAIN_SETTINGS = ("socket", "socket_group", "max_connections", "max_line_bytes", "fractional", "invalid_flags",
                   "read_only", "log_format", "log_level", "shutdown_timeout", "poll_interval", "etcd_user",
                   "http_allow_remote", *(option[2:].replace("-", "_") for option, *_ in HTTP_LIMITS), *observe.SETTINGS)


def raise_open_file_limit(max_connections: int) -> None:
    """Lift the soft RLIMIT_NOFILE towards the hard limit, so max_connections can be reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(hard, max(want, soft))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            pass


def _publish(args: argparse.Namespace) -> int:
    from agent.cli.publish import run

    return run(args)


def cmd_validate(args: argparse.Namespace) -> int:
    from agent.engine.formats.document import FlagFileError, parse_flag_document

    bad = 0
    for path in args.paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror or exc}")
            bad += 1
            continue
        try:
            parsed = parse_flag_document(data, path, fractional=args.fractional, invalid_flags="reject")
        except FlagFileError as exc:
            for p in exc.problems:
                print(f"{p.source}: {p.path}: {p.message}")
            bad += 1
            continue
        print(f"{path}: ok ({len(parsed.flags)} flags, {parsed.format} format)", file=sys.stderr)
    return 1 if bad else 0


def _context(args: argparse.Namespace) -> dict[str, Any] | None:
    context = dict(args.context) if getattr(args, "context", None) else {}
    if getattr(args, "user", None) is not None:
        context["targetingKey"] = args.user
    return context or None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def cmd_get(args: argparse.Namespace) -> int:
    msg: dict[str, Any] = {"op": "evaluate", "flag": args.flag}
    if (ctx := _context(args)) is not None:
        msg["context"] = ctx
    if args.type:
        msg["type"] = args.type
    if args.default is not None:
        msg["default"] = args.default
    result = request(socket_path(args.socket), msg, timeout=args.timeout)
    if args.json:
        _print_json(result)
    elif "value" not in result:
        print(f"flagsock get: {args.flag} has no value ({result.get('reason')}); pass --default", file=sys.stderr)
        return 1
    elif isinstance(result["value"], str):
        print(result["value"])
    else:
        print(json.dumps(result["value"], ensure_ascii=False))
    return 0


def cmd_flags(args: argparse.Namespace) -> int:
    msg: dict[str, Any] = {"op": "evaluate_all"}
    if (ctx := _context(args)) is not None:
        msg["context"] = ctx
    result = request(socket_path(args.socket), msg, timeout=args.timeout)
    if args.json:
        _print_json(result)
        return 0
    flags = result["flags"]
    width = max((len(k) for k in flags), default=4)
    for key in sorted(flags):
        item = flags[key]
        if "error" in item:
            shown = f"error {item['error']['code']}: {item['error']['message']}"
        else:
            value = json.dumps(item["value"], ensure_ascii=False) if "value" in item else "(no value)"
            variant = item.get("variant")
            shown = f"{value}  ({item['reason']}" + (f", variant {variant})" if variant is not None else ")")
        print(f"{key:<{width}}  {shown}")
    return 0


def cmd_simple(op: str):
    def run(args: argparse.Namespace) -> int:
        result = request(socket_path(args.socket), {"op": op}, timeout=args.timeout)
        if args.json or op == "stats":
            _print_json(result)
        elif op == "health":
            print(f"{result['status']}: revision {result['revision']}, {result['flag_count']} flags, up {result['uptime_s']:.0f} s")
            for s in result["sources"]:
                state = "loaded" if s["loaded"] else "not loaded"
                print(f"  {s['path']}: {state} ({s['flag_count']} flags)" + (f"; error: {s['error']['message']}" if s["error"] else ""))
            for p in result.get("problems", []):
                print(f"  broken flag {p['flag']} in {p['source']}: {p['path']}: {p['message']}")
        elif op == "reload":
            print(f"revision {result['revision']}" + (" (changed)" if result["changed"] else " (no change)"))
        else:
            print(f"ok, revision {result['revision']}")
        return 1 if op == "health" and result["status"] != "ok" else 0

    return run


def cmd_set(args: argparse.Namespace) -> int:
    msg: dict[str, Any] = {"op": "set", "flag": args.flag}
    if args.definition is not None:
        if args.rollout is not None or args.allow:
            raise CliError("--definition replaces the whole flag; do not combine it with --rollout or --allow", 2)
        msg["definition"] = args.definition
    else:
        msg["enabled"] = args.enabled
        if args.rollout is not None:
            msg["rollout_percentage"] = args.rollout
        if args.allow:
            msg["allowed_users"] = args.allow
    if args.if_revision is not None:
        msg["if_revision"] = args.if_revision
    result = request(socket_path(args.socket), msg, timeout=args.timeout)
    print(f"{args.flag} set; revision {result['revision']}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    msg: dict[str, Any] = {"op": "delete", "flag": args.flag}
    if args.if_revision is not None:
        msg["if_revision"] = args.if_revision
    result = request(socket_path(args.socket), msg, timeout=args.timeout)
    print(f"{args.flag} deleted; revision {result['revision']}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    for event in events(socket_path(args.socket), timeout=args.timeout):
        if args.json:
            print(json.dumps(event, ensure_ascii=False), flush=True)
            continue
        kind = event.get("event")
        if kind == "subscribed":
            print(f"watching revision {event['revision']}", flush=True)
        elif kind == "changed":
            changes = ", ".join(f"{k} {v}" for k, v in sorted(event["flags"].items()))
            print(f"revision {event['revision']}: {changes}", flush=True)
        elif kind == "reload_failed":
            print(f"reload failed (still serving revision {event['revision']}): {event['message']}", flush=True)
        else:
            print(json.dumps(event, ensure_ascii=False), flush=True)
    return 0


COMMANDS = {
    "serve": cmd_serve,
    "validate": cmd_validate,
    "publish": _publish,
    "get": cmd_get,
    "flags": cmd_flags,
    "health": cmd_simple("health"),
    "stats": cmd_simple("stats"),
    "ping": cmd_simple("ping"),
    "reload": cmd_simple("reload"),
    "set": cmd_set,
    "delete": cmd_delete,
    "watch": cmd_watch,
}
