"""The CLI's looking-glass commands: ``explain``, ``history`` and ``usage`` (``top`` is in top.py).

Each prints what one op answers in a form a person reads at a glance; ``--json`` prints it raw.
"""

from __future__ import annotations

import argparse
import calendar
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from agent.cli import top
from agent.cli.transport import CliError, exchange, request, socket_path

Client = Callable[..., argparse.ArgumentParser]
#: The serve options added here, passed to the config as they are.
SETTINGS = ("history_max_bytes",)


def add_commands(sub: Any, client: Client, json_object: Callable[[str], Any], positive_int: Any,
                 serve: argparse.ArgumentParser) -> None:
    """Add the subcommands to ``sub`` (``client`` makes a parser with --socket and --timeout), and
    ``serve``'s history option."""
    serve.add_argument("--history-max-bytes", type=positive_int, metavar="N",
                       help="bound of the change history, oldest dropped first (default 16 MiB)")
    explain = client("explain", "show how a flag's value for a user or context was reached",
                     "Evaluate a flag and print each step its rule took, as a tree, ending with how the "
                     "variant was chosen.")
    explain.add_argument("flag")
    explain.add_argument("--user", metavar="ID", help="the targetingKey")
    explain.add_argument("--context", type=json_object("--context"), metavar="JSON",
                         help="evaluation context, a JSON object (or @file)")
    explain.add_argument("--json", action="store_true", help="print the whole answer as JSON")

    history = client("history", "show who changed which flag, when, and from what",
                     "Print the agent's change history, newest first: revision, time, who, and each "
                     "flag's definition before and after.")
    history.add_argument("flag", nargs="?", help="only changes of this flag")
    history.add_argument("--limit", type=positive_int, default=20, metavar="N", help="changes to show (default 20)")
    history.add_argument("--json", action="store_true")

    usage = client("usage", "show how often each flag was evaluated since the agent started, and with what split")
    usage.add_argument("--stale", action="store_true",
                       help="list only the flags never evaluated and those that gave every caller the same variant")
    usage.add_argument("--json", action="store_true")
    top.add_command(client)


def _compact(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_step(step: dict[str, Any]) -> str:
    """One trace step as one line of the tree (without its indentation)."""
    op = step["op"]
    if op == "flag":
        if not step.get("found"):
            return f"flag {step['key']}: not served"
        default = step.get("default_variant")
        return (f"flag {step['key']} ({step['format']}, {step['state']}) from {step['source']}; variants "
                f"{', '.join(step['variants']) or '(none)'}; default {default if default is not None else '(none)'}")
    if op == "targeting":
        return f"targeting, with context keys: {', '.join(step['context_keys'])}"
    if op == "result":
        variant = step.get("variant")
        shown = f"variant {variant}" if variant is not None else "no variant"
        return f"=> {shown} ({step['reason']}): {step['why']}"
    if "path" not in step:  # a step of a simple flag's rollout, or a truncation note
        facts = ", ".join(f"{k} {_compact(v)}" for k, v in step.items() if k not in ("op", "depth", "result"))
        line = f"{op}: {facts}" if facts else op
        return line + (f" -> {_compact(step['result'])}" if "result" in step else "")
    skipped = set(step.get("skipped", ()))
    args = ", ".join("(not evaluated)" if i in skipped else _compact(a, 40) for i, a in enumerate(step.get("args", ())))
    line = f"{op}({args})"
    if "error" in step:
        line += f" raised: {step['error']}"
    else:
        line += f" -> {_compact(step.get('result'))}"
    if step.get("constant"):
        line += "  (decided when the rule was loaded)"
    branch = step.get("branch")
    if branch:
        taken = branch["taken"]
        line += f"  [then #{branch['condition'] + 1}]" if taken == "then" else f"  [{taken}]"
    bucket = step.get("bucket")
    if bucket:
        if "why" in bucket:
            line += f"  [{bucket['why']}]"
        elif "percent" in bucket:  # v1, legacy flagd's percentages
            ranges = ", ".join(f"{r['variant']} {r['from']:.2f}-{r['to']:.2f}%" for r in bucket["ranges"])
            line += f"  [at {bucket['percent']:.2f}% -> {_compact(bucket['chosen'], 30)}; {ranges}]"
        else:
            ranges = ", ".join(f"{r['variant']} {r['from']}-{r['to']}" for r in bucket["ranges"])
            line += f"  [bucket {bucket['bucket']} of {bucket['total']} -> {_compact(bucket['chosen'], 30)}; {ranges}]"
    return line


def print_trace(trace: list[dict[str, Any]]) -> None:
    for step in trace:
        print("  " * step.get("depth", 0) + render_step(step))


def cmd_explain(args: argparse.Namespace) -> int:
    msg: dict[str, Any] = {"op": "explain", "flag": args.flag}
    context = dict(args.context) if args.context else {}
    if args.user is not None:
        context["targetingKey"] = args.user
    if context:
        msg["context"] = context
    answer = exchange(socket_path(args.socket), msg, timeout=args.timeout)
    if args.json:
        print(json.dumps(answer.get("result", answer), indent=2, sort_keys=True, ensure_ascii=False))
        return 0 if answer.get("ok") else 1
    if answer.get("ok"):
        result = answer["result"]
        print_trace(result["trace"])
        value = _compact(result["value"], 200) if "value" in result else "(no value)"
        print(f"value {value} at revision {result['revision']}")
        return 0
    err = answer.get("error") or {}
    if "trace" not in err:
        raise CliError(f"{err.get('code', 'ERROR')}: {err.get('message', 'no message')}")
    print_trace(err["trace"])
    print(f"flagsock explain: {err['code']}: {err['message']}", file=sys.stderr)
    return 1


def describe_by(by: dict[str, Any]) -> str:
    """Who made a change, in a few words."""
    if "source" in by:
        text = ", ".join(by.get("sources") or [by["source"]])
        return text + (" (changed while the agent was stopped)" if by.get("while_stopped") else "")
    user = by.get("user")
    name = user if user is not None else f"uid {by.get('uid')}"
    return f"{name} (uid {by.get('uid')}, pid {by.get('pid')})" if user is not None else f"{name} (pid {by.get('pid')})"


def describe_flag_change(key: str, change: dict[str, Any]) -> list[str]:
    """A flag's change: added/removed with its definition, or the top-level keys that changed."""
    kind, before, after = change["change"], change.get("before"), change.get("after")
    lines = [f"  {key} {kind}"]
    if kind == "added":
        lines.append(f"    {_compact(after, 110)}")
    elif kind == "removed":
        lines.append(f"    was {_compact(before, 106)}")
    elif isinstance(before, dict) and isinstance(after, dict):
        for field in sorted(before.keys() | after.keys()):
            old, new = before.get(field, _ABSENT), after.get(field, _ABSENT)
            if old != new:
                shown_old = "(absent)" if old is _ABSENT else _compact(old, 50)
                shown_new = "(absent)" if new is _ABSENT else _compact(new, 50)
                lines.append(f"    {field}: {shown_old} -> {shown_new}")
    else:
        lines.append(f"    {_compact(before, 50)} -> {_compact(after, 50)}")
    return lines


_ABSENT: Any = object()


def cmd_history(args: argparse.Namespace) -> int:
    msg: dict[str, Any] = {"op": "history", "limit": args.limit}
    if args.flag:
        msg["flag"] = args.flag
    result = request(socket_path(args.socket), msg, timeout=args.timeout)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    if not result["changes"]:
        print(f"no changes of {args.flag} recorded" if args.flag else "no changes recorded")
        return 0
    for entry in result["changes"]:
        print(f"revision {entry['revision']}  {entry['at']}  by {describe_by(entry['by'])}")
        for key in sorted(entry["flags"]):
            print("\n".join(describe_flag_change(key, entry["flags"][key])))
    return 0


def ago(iso: str | None, now: float | None = None) -> str:
    """``2026-01-01T00:00:00.000Z`` as "5s ago" (or "never")."""
    if iso is None:
        return "never"
    then = calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))
    return f"{duration(max(0.0, (time.time() if now is None else now) - then))} ago"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def split(counts: dict[str, int], total: int) -> str:
    """``{"on": 25, "off": 75}`` as "off 75.0%  on 25.0%" (largest first)."""
    return "  ".join(f"{name} {100 * n / total:.1f}%" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def stale(usage: dict[str, dict[str, Any]]) -> tuple[list[str], list[tuple[str, str]]]:
    """Served flags never evaluated, and those that gave every caller the same answer (with it)."""
    never, same = [], []
    for key, item in sorted(usage.items()):
        if item.get("served") is False:
            continue
        if not item["evaluations"]:
            never.append(key)
        elif len(item["variants"]) <= 1 and len(item["reasons"]) == 1:
            (reason,) = item["reasons"]
            answer = f"variant {next(iter(item['variants']))}" if item["variants"] else "no variant"
            same.append((key, f"{answer} for all {item['evaluations']:,} evaluations ({reason})"))
    return never, same


def cmd_usage(args: argparse.Namespace) -> int:
    result = request(socket_path(args.socket), {"op": "stats"}, timeout=args.timeout)
    usage = result.get("usage", {})
    if args.json:
        print(json.dumps(usage if not args.stale else dict(zip(("never_evaluated", "same_variant"), stale(usage))),
                         indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    since = f"since the agent started {duration(result['uptime_s'])} ago"
    if args.stale:
        never, same = stale(usage)
        print(f"never evaluated {since}: {len(never)}")
        for key in never:
            print(f"  {key}")
        print(f"gave every caller the same answer: {len(same)}")
        for key, answer in same:
            print(f"  {key}: {answer}")
        return 0
    if not usage:
        print("no flags served")
        return 0
    width = max(len(k) for k in usage)
    print(f"{'flag':<{width}}  {'evaluations':>11}  {'last':>10}  split ({since})")
    for key, item in sorted(usage.items(), key=lambda kv: (-kv[1]["evaluations"], kv[0])):
        total = item["evaluations"]
        shown = split(item["variants"], total) if total else ""
        if "errors" in item:
            shown += ("  " if shown else "") + "errors " + ", ".join(f"{c} {n}" for c, n in sorted(item["errors"].items()))
        gone = "  (no longer served)" if item.get("served") is False else ""
        print(f"{key:<{width}}  {total:>11,}  {ago(item['last_evaluated']):>10}  {shown}{gone}".rstrip())
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "explain": cmd_explain,
    "history": cmd_history,
    "usage": cmd_usage,
    "top": top.cmd_top,
}

__all__ = ["COMMANDS", "add_commands", "print_trace", "render_step", "request"]
