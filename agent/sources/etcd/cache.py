"""An etcd version as the bytes the state directory keeps (``agent.sources.cache.LastGood``).

The keys under the prefix with their revisions, and the version's revision, so an agent that
starts while etcd is unreachable serves the same flags at the same revision as before.
"""

from __future__ import annotations

from types import MappingProxyType

import orjson

from agent.sources.etcd.codec import KeyValue, b64, unb64
from agent.sources.etcd.version import Version

FORMAT = 1


def encode(version: Version) -> bytes:
    return orjson.dumps({
        "format": FORMAT, "revision": version.revision,
        "kvs": [[b64(kv.key), b64(kv.value), kv.create_revision, kv.mod_revision, kv.version]
                for kv in version.kvs.values()],
    })


def decode(data: bytes) -> Version | None:
    """The version kept in ``data``; None when it is not one this agent wrote."""
    try:
        raw = orjson.loads(data)
        if raw.get("format") != FORMAT:
            return None
        table = {}
        for key, value, created, modified, count in raw["kvs"]:
            kv = KeyValue(unb64(key), unb64(value), int(created), int(modified), int(count))
            table[kv.key] = kv
        return Version(int(raw["revision"]), MappingProxyType(table))
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None
