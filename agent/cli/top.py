"""``flagsock top``: a live full-screen view of what the agent is asked, refreshed every second.

Per flag: evaluations per second, errors per second, and the split of the variants answered in
the last second as a bar; the health line on top, the newest changes from the history below.
It polls ``stats``, ``health`` and ``history`` once a second; rates are differences of the
agent's counters between two polls. Keys: ``s`` cycles the sort (rate, errors, name), ``r`` /
``e`` / ``n`` pick one, ``q`` quits. It fits 80x24 and needs nothing of the terminal but what
``blessed`` finds in terminfo, so it works over SSH.

``blessed`` is an optional extra (``pip install 'flagsock[top]'``): the agent never imports it.
:func:`render` is the pure part, screen lines from two polls, so it is tested without a terminal.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from agent.cli.transport import CliError, request, socket_path

SORTS = ("rate", "errors", "name")
#: Fill characters of the variants in a bar, in the order of their share.
FILLS = "█▓▒░#=+-"
REFRESH = 1.0


class Poller:
    """Asks the agent for what a frame shows (each request on a connection of its own, as the
    stdlib client makes them: three a second)."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        return request(self.path, message, timeout=self.timeout)

    def poll(self) -> dict[str, Any]:
        return {"at": time.monotonic(), "stats": self.ask({"op": "stats"}), "health": self.ask({"op": "health"}),
                "history": self.ask({"op": "history", "limit": 5})["changes"]}

    def close(self) -> None:
        pass


def rows(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[dict[str, Any]]:
    """Per flag: rate, error rate and the variant split since ``previous`` (or since start)."""
    usage = current["stats"].get("usage", {})
    before = previous["stats"].get("usage", {}) if previous else {}
    seconds = max(current["at"] - previous["at"], 1e-3) if previous else None
    out = []
    for key, item in usage.items():
        old = before.get(key, {"evaluations": 0, "variants": {}, "errors": {}})
        evaluations = item["evaluations"] - old["evaluations"] if seconds else item["evaluations"]
        errors = sum(item.get("errors", {}).values()) - (sum(old.get("errors", {}).values()) if seconds else 0)
        variants = {v: n - (old["variants"].get(v, 0) if seconds else 0) for v, n in item["variants"].items()}
        variants = {v: n for v, n in variants.items() if n > 0}
        out.append({
            "key": key, "served": item.get("served", True),
            "rate": evaluations / seconds if seconds else 0.0,
            "errors": errors / seconds if seconds else 0.0,
            "variants": variants,
            "total": item["evaluations"],
        })
    return out


def sort_rows(found: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    if by == "name":
        return sorted(found, key=lambda r: r["key"])
    if by == "errors":
        return sorted(found, key=lambda r: (-r["errors"], -r["rate"], r["key"]))
    return sorted(found, key=lambda r: (-r["rate"], -r["total"], r["key"]))


def bar(variants: dict[str, int], width: int) -> tuple[str, str]:
    """The split as a bar of ``width`` cells (one fill character per variant) and its legend."""
    total = sum(variants.values())
    if not total:
        return "·" * width, ""
    ordered = sorted(variants.items(), key=lambda kv: (-kv[1], kv[0]))
    cells, legend, used = [], [], 0
    for index, (name, n) in enumerate(ordered):
        fill = FILLS[min(index, len(FILLS) - 1)]
        share = n / total
        count = width - used if index == len(ordered) - 1 else round(share * width)
        count = max(0, min(count, width - used))
        cells.append(fill * count)
        used += count
        legend.append(f"{fill}{name} {share * 100:.0f}%")
    return "".join(cells), " ".join(legend)


def render(width: int, height: int, previous: dict[str, Any] | None, current: dict[str, Any], sort_by: str) -> list[str]:
    """The screen: one string per line, none wider than ``width``, at most ``height`` lines."""
    health = current["health"]
    clock = time.strftime("%H:%M:%S")
    head = (f"flagsock {health['status']}  revision {health['revision']}  {health['flag_count']} flags  "
            f"up {int(health['uptime_s'])}s  not found/s {_not_found_rate(previous, current):.0f}")
    lines = [_fit(head, width - len(clock) - 1) + " " + clock,
             _fit(f"sort: {sort_by}  (s cycle, r rate, e errors, n name, q quit)", width)]
    error = health.get("last_error")
    if error:
        lines.append(_fit(f"last error: {error['message']}", width))
    history = current["history"]
    room = height - len(lines) - 2 - (min(len(history), 4) + 1 if history else 0)
    name_width = max(10, min(24, width // 4))
    bar_width = max(10, min(30, width - name_width - 40))
    lines.append(_fit(f"{'FLAG':<{name_width}} {'EVAL/S':>8} {'ERR/S':>6}  SPLIT", width))
    table = sort_rows(rows(previous, current), sort_by)
    for row in table[: max(room, 0)]:
        cells, legend = bar(row["variants"], bar_width)
        key = row["key"] if len(row["key"]) <= name_width else row["key"][: name_width - 1] + "…"
        lines.append(_fit(f"{key:<{name_width}} {row['rate']:>8.1f} {row['errors']:>6.1f}  {cells} {legend}", width))
    if len(table) > max(room, 0):
        lines.append(_fit(f"... {len(table) - max(room, 0)} more flags (a larger terminal shows more)", width))
    if history:
        lines.append(_fit("recent changes:", width))
        for entry in history[:4]:
            by = entry["by"]
            who = by.get("user") or (f"uid {by['uid']}" if "uid" in by else by.get("source", "?"))
            changed = ", ".join(f"{k} {v['change']}" for k, v in sorted(entry["flags"].items()))
            lines.append(_fit(f"  rev {entry['revision']} {entry['at'][11:19]} {who}: {changed}", width))
    return lines[:height]


def _not_found_rate(previous: dict[str, Any] | None, current: dict[str, Any]) -> float:
    if previous is None:
        return 0.0
    seconds = max(current["at"] - previous["at"], 1e-3)
    return (current["stats"].get("not_found", 0) - previous["stats"].get("not_found", 0)) / seconds


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def cmd_top(args: argparse.Namespace) -> int:
    try:
        import blessed
    except ImportError:
        raise CliError("flagsock top needs the blessed library: pip install 'flagsock[top]'", 2) from None
    poller = Poller(socket_path(args.socket), args.timeout)
    term = blessed.Terminal()
    sort_by = SORTS[0]
    previous = None
    try:
        with term.fullscreen(), term.cbreak(), term.hidden_cursor():
            current = poller.poll()
            while True:
                lines = render(term.width, term.height, previous, current, sort_by)
                print(term.home + term.clear + "\n".join(lines), end="", flush=True)
                deadline = time.monotonic() + REFRESH
                while (left := deadline - time.monotonic()) > 0:
                    key = term.inkey(timeout=left)
                    if key == "q" or key.code == term.KEY_ESCAPE:
                        return 0
                    if key in ("s", "r", "e", "n"):
                        sort_by = SORTS[(SORTS.index(sort_by) + 1) % len(SORTS)] if key == "s" else \
                            {"r": "rate", "e": "errors", "n": "name"}[str(key)]
                        print(term.home + term.clear + "\n".join(render(term.width, term.height, previous, current,
                                                                        sort_by)), end="", flush=True)
                previous, current = current, poller.poll()
    finally:
        poller.close()


def add_command(client: Any) -> None:
    top = client("top", "a live view of evaluations per flag, their variant split, errors and changes",
                 "A full-screen view refreshed every second: evaluations per second per flag with the variant "
                 "split as bars, errors, the health line and the newest changes. Keys: s (or r, e, n) sorts, "
                 "q quits. Needs the 'top' extra (pip install 'flagsock[top]').")
    del top
