"""``flagsock publish FILE --to etcd://HOST:PORT/PREFIX [--prune]``: the GitOps path.

A reviewed flag file is validated exactly as an agent would load it, then written into the
prefix in one etcd transaction: every flag whose definition changed is put, ``.meta`` carries
the file's metadata and ``$evaluators``, ``--prune`` deletes the flags the file no longer has,
and the ``.written`` marker is rewritten (so agents' ``if_revision`` sees the change). The
transaction holds only if nothing under the prefix changed since it was read, so a write made
meanwhile from any host is never overwritten unseen: publish reads again and retries.

Exit status: 0 published (or nothing to change), 1 the file is invalid or etcd refused (nothing
written), 2 bad usage, 3 etcd could not be reached.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import time
from typing import Any

import orjson

RETRIES = 5


class PublishError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def flagd_definitions(parsed: Any, fractional: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per flag, its flagd JSON definition; and the file-level ``.meta`` (metadata, $evaluators).

    A simple-format file is published as the flagd flags that answer exactly like it (etcd holds
    flagd definitions only), so agents reading the prefix need no second format.
    """
    from agent.writes.docedit import flagd_equivalent, simple_state

    doc = parsed.document
    raw_flags = doc.get("flags", doc) if parsed.format != "simple-flat" else doc
    if isinstance(raw_flags, list):
        raw_flags = {item["key"]: {k: v for k, v in item.items() if k != "key"} for item in raw_flags}
    definitions = {}
    for key, raw in raw_flags.items():
        if parsed.format.startswith("simple"):
            state = simple_state(raw) or {}
            raw = flagd_equivalent(key, bool(state.get("enabled")), state.get("rollout_percentage"),
                                   state.get("allowed_users") or [], fractional=fractional)
        definitions[key] = raw
    meta = {k: doc[k] for k in ("metadata", "$evaluators") if parsed.format == "flagd" and doc.get(k)}
    return definitions, meta


async def publish(path: str, url: str, settings: Any, *, prune: bool, fractional: str, limits: Any = None) -> str:
    """Validate ``path`` and write it into ``url``'s prefix; the line to print on success."""
    from agent.engine.formats.document import FlagFileError, parse_flag_document
    from agent.engine.limits import DEFAULT_LIMITS
    from agent.sources.reading import UnreadableFile, read_regular_file
    from agent.sources.etcd.errors import (AuthError, EtcdRequestError, EtcdUnavailable, OutcomeUnknown,
                                           RequestTooLarge)
    from agent.sources.etcd.gateway import EtcdGateway
    from agent.sources.etcd.layout import EtcdLocation, reserved
    from agent.sources.etcd.txn import Compare, Delete, Put

    limits = limits or DEFAULT_LIMITS
    try:
        data = read_regular_file(path, limits.max_bytes)  # a FIFO or a device is refused, not read
    except UnreadableFile as exc:
        raise PublishError(f"{path}: {exc}", 1) from None
    except OSError as exc:
        raise PublishError(f"{path}: cannot read: {exc.strerror or exc}", 1) from None
    try:
        parsed = parse_flag_document(data, path, fractional=fractional, invalid_flags="reject", limits=limits)
    except FlagFileError as exc:
        raise PublishError("\n".join(f"{p.source}: {p.path}: {p.message}" for p in exc.problems)
                           + "\nnothing was written", 1) from None
    definitions, meta = flagd_definitions(parsed, fractional)
    location = EtcdLocation.parse(url)
    wanted = {location.flag_key(k): orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for k, v in definitions.items()}
    if meta:
        wanted[location.meta_key] = orjson.dumps(meta, option=orjson.OPT_SORT_KEYS)
    by = {"publish": os.path.abspath(path), "user": getpass.getuser(), "host": socket.gethostname()}
    try:
        async with EtcdGateway(settings) as gateway:
            for _ in range(RETRIES):
                listed = await gateway.range_prefix(location.prefix)
                current = {kv.key: kv.value for kv in listed.kvs}
                puts = [Put(k, v) for k, v in wanted.items() if current.get(k) != v]
                stale = [k for k in current if k not in wanted and not reserved(location.name(k))]
                if not meta and location.meta_key in current:
                    stale.append(location.meta_key)
                deletes = [Delete(k) for k in stale] if prune else []
                kept = (f"; {len(stale)} flags in etcd are not in the file (--prune deletes them)"
                        if stale and not prune else "")
                if not puts and not deletes:
                    return f"{location.url}: already as in {path} at revision {listed.revision}{kept}"
                marker = Put(location.written_key, orjson.dumps({"by": by, "at": time.time()}))
                unchanged = Compare.mod(location.prefix, "LESS", listed.revision + 1, location.range_end)
                result = await gateway.txn([unchanged], [*puts, *deletes, marker])
                if result.succeeded:
                    flag_puts = sum(1 for op in puts if op.key != location.meta_key)
                    meta_note = "; metadata and $evaluators updated" if len(puts) != flag_puts else ""
                    return (f"{location.url}: published {path} at revision {result.revision}: "
                            f"{flag_puts} put, {len(deletes)} deleted, {len(definitions) - flag_puts} unchanged"
                            f"{meta_note}{kept}")
            raise PublishError(f"{location.url} kept changing while publishing ({RETRIES} tries); nothing was "
                               "written, try again", 1)
    except RequestTooLarge as exc:
        raise PublishError(f"{exc}; nothing was written (split the file, or raise etcd's --max-request-bytes)", 1) from None
    except AuthError as exc:
        raise PublishError(f"{exc}; nothing was written", 1) from None
    except EtcdRequestError as exc:
        hint = " (etcd allows 128 operations per transaction unless --max-txn-ops is raised)" \
            if "too many operations" in str(exc) else ""
        raise PublishError(f"etcd refused the transaction: {exc}{hint}; nothing was written", 1) from None
    except (EtcdUnavailable, OutcomeUnknown) as exc:
        raise PublishError(f"cannot reach etcd at {url}: {exc}", 3) from None


def run(args: Any) -> int:
    import trio

    from agent.sources.etcd.layout import EtcdLocation, LocationError
    from agent.sources.etcd.settings import EtcdSettings

    try:
        location = EtcdLocation.parse(args.to)
        password = None
        if args.etcd_password_file:
            with open(args.etcd_password_file, encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        settings = EtcdSettings(location.endpoints, user=args.etcd_user, password=password, ca=args.etcd_ca,
                                cert=args.etcd_cert, key=args.etcd_key)
    except (LocationError, ValueError) as exc:
        print(f"flagsock publish: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"flagsock publish: --etcd-password-file {args.etcd_password_file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        line = trio.run(lambda: publish(args.file, args.to, settings, prune=args.prune, fractional=args.fractional))
    except PublishError as exc:
        print(exc.message, file=sys.stderr)
        return exc.exit_code
    print(line)
    return 0
