"""Where flags live in etcd: ``etcd://HOST:PORT[,HOST:PORT...]/PREFIX`` and the keys under it.

- ``PREFIX/<flag key>``: one key per flag; its value is the flag's flagd JSON definition
  (``{"state": ..., "variants": ..., "defaultVariant": ..., "targeting": ...}``). One key per flag
  lets writes of different flags from different hosts never touch the same key.
- ``PREFIX/.meta``: the file-level parts of a flagd document, ``{"metadata": {...},
  "$evaluators": {...}}`` (both optional; the key itself may be absent).
- ``PREFIX/.written``: rewritten by every flagsock write (who, when, a write id). It makes a
  delete visible to "nothing under the prefix changed after R" (a deleted key leaves no
  mod_revision behind, the marker does) and lets a write whose answer was lost be recognised.

Names under the prefix that start with "." are reserved for flagsock and are not flags.
"""

from __future__ import annotations

from urllib.parse import unquote

import attrs

from agent.sources.etcd.codec import prefix_end

SCHEME = "etcd://"
META = ".meta"
WRITTEN = ".written"


class LocationError(ValueError):
    """An ``etcd://`` source that cannot be used, with what to write instead."""


@attrs.frozen
class EtcdLocation:
    """The endpoints of one cluster and the key prefix (always ending in "/")."""

    endpoints: tuple[str, ...]
    prefix: bytes

    @classmethod
    def parse(cls, url: str) -> "EtcdLocation":
        """``etcd://10.0.0.1:2379,10.0.0.2:2379/flagsock/prod`` -> endpoints and ``b"/flagsock/prod/"``."""
        if not url.startswith(SCHEME):
            raise LocationError(f"{url!r} is not an etcd source (etcd://HOST:PORT[,HOST:PORT...]/PREFIX)")
        hosts, slash, path = url[len(SCHEME):].partition("/")
        endpoints = tuple(h.strip() for h in hosts.split(",") if h.strip())
        if not endpoints:
            raise LocationError(f"{url!r} names no endpoint; write etcd://HOST:PORT/PREFIX")
        for endpoint in endpoints:
            host, colon, port = endpoint.rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise LocationError(f"{url!r}: endpoint {endpoint!r} is not HOST:PORT (etcd's client port is 2379)")
        prefix = unquote(path).strip("/")
        if not slash or not prefix:
            raise LocationError(f"{url!r} names no key prefix; write etcd://HOST:PORT/PREFIX, e.g. /flagsock/prod")
        return cls(endpoints, ("/" + prefix + "/").encode())

    @property
    def url(self) -> str:
        return f"{SCHEME}{','.join(self.endpoints)}{self.prefix.decode().rstrip('/')}"

    @property
    def range_end(self) -> bytes:
        return prefix_end(self.prefix)

    def flag_key(self, flag: str) -> bytes:
        return self.prefix + flag.encode()

    @property
    def meta_key(self) -> bytes:
        return self.prefix + META.encode()

    @property
    def written_key(self) -> bytes:
        return self.prefix + WRITTEN.encode()

    def name(self, key: bytes) -> str:
        """The name of ``key`` under the prefix (``"dark_mode"``, ``".meta"``)."""
        return key[len(self.prefix):].decode("utf-8", errors="replace")


def reserved(name: str) -> bool:
    return name.startswith(".")
