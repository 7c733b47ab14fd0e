"""The keys under a prefix at one revision, and the flagd document they make.

A Version is immutable: the watch task makes a new one for each batch of events and swaps the
reference, so ``load`` in a worker thread reads one whole version without a lock.

The revision of a version is the newest change under the prefix (the highest mod_revision of a
key, or the revision of a delete the watch saw): the same number on every host that holds the
same keys, whatever else the cluster stores meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import orjson

from agent.sources.etcd.codec import KeyValue
from agent.sources.etcd.layout import META, EtcdLocation, reserved
from agent.sources.etcd.watch import WatchEvent


class DocumentError(ValueError):
    """A key under the prefix holds something that is not part of a flag document."""


@attrs.frozen
class Version:
    revision: int
    kvs: Mapping[bytes, KeyValue]

    @classmethod
    def listed(cls, kvs: Iterable[KeyValue]) -> "Version":
        table = {kv.key: kv for kv in kvs}
        return cls(max((kv.mod_revision for kv in table.values()), default=0), MappingProxyType(table))

    def apply(self, events: Iterable[WatchEvent]) -> "Version":
        table = dict(self.kvs)
        revision = self.revision
        for event in events:
            if event.type == "PUT":
                table[event.kv.key] = event.kv
            else:
                table.pop(event.kv.key, None)
            revision = max(revision, event.kv.mod_revision)
        return Version(revision, MappingProxyType(table))


def assemble(version: Version, location: EtcdLocation) -> bytes:
    """The flagd JSON document of ``version``: flags by name, plus ``.meta``'s metadata and $evaluators.

    Raises:
        DocumentError: a value is not JSON, or ``.meta`` is not of its shape (naming the etcd key).
    """
    flags: dict[str, Any] = {}
    doc: dict[str, Any] = {"flags": flags}
    for key in sorted(version.kvs):
        name = location.name(key)
        if name == META:
            doc.update(_meta(key, version.kvs[key].value))
        elif not reserved(name):
            flags[name] = _json(key, version.kvs[key].value)
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _json(key: bytes, value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DocumentError(f"etcd key {key.decode(errors='replace')} does not hold JSON ({exc}); "
                            f"it starts {value[:60]!r}") from None


def _meta(key: bytes, value: bytes) -> dict[str, Any]:
    meta = _json(key, value)
    if not isinstance(meta, dict) or meta.keys() - {"metadata", "$evaluators"}:
        raise DocumentError(f"etcd key {key.decode(errors='replace')} must hold "
                            '{"metadata": {...}, "$evaluators": {...}} (both optional), nothing else')
    return meta
