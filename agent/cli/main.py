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

from agent.cli import observe
from agent.cli.limits import DOCUMENT_LIMITS, document_limits
from agent.cli.parser import HTTP_LIMITS, build_parser
from agent.cli.transport import CliError, events, request, socket_path

#: agent.engine.rules.fractional.VERSIONS, spelt out: importing the engine would slow every client command.
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
                   "http_allow_remote", *(option[2:].replace("-", "_") for option, *_ in HTTP_LIMITS), *observe.SETTINGS,
                   *(option[2:].replace("-", "_") for option, *_ in DOCUMENT_LIMITS), "load_timeout")


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
    from agent.sources.reading import UnreadableFile, read_regular_file

    limits = document_limits(args)
    bad = 0
    for path in args.paths:
        try:
            data = read_regular_file(path, limits.max_bytes)
        except UnreadableFile as exc:
            print(f"{path}: {exc.reason}")
            bad += 1
            continue
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror or exc}")
            bad += 1
            continue
        try:
            parsed = parse_flag_document(data, path, fractional=args.fractional, invalid_flags="reject",
                                         limits=limits)
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
