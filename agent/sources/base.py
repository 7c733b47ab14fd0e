"""The source seam: what every flag source (a file today; HTTP and etcd next) gives the store.

A source is a place one version of a flag document comes from. The store never asks how: it
calls :meth:`Source.load` off the event loop for the newest version, parsed and compiled, and
runs :meth:`Source.watch` as a task that says when a newer version may be there. Writes go back
through the source that owns the flag (its ``writer``), never around it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

import attrs
import trio

from agent.engine.model import ParsedSource

EMPTY: Mapping[str, Any] = MappingProxyType({})


@attrs.frozen
class LoadOptions:
    """How every source's documents are parsed (the same engine settings for all of them)."""

    fractional: str = "v2"
    invalid_flags: str = "reject"


@attrs.frozen
class SourceState:
    """The last version of one flag source that loaded (``content_hash`` None: none has yet).

    ``path`` names the source as health shows it: a file path or a URL. Why a newer version
    failed is health state, kept by the store, not part of the snapshot.
    """

    path: str
    content_hash: str | None = None
    format: str | None = None
    flags: Mapping[str, Any] = EMPTY
    problems: tuple[Any, ...] = ()
    #: What the next parse of this source needs to reuse unchanged flags (see parse_flag_document).
    signatures: Mapping[str, bytes] = EMPTY
    context: bytes = b""
    #: The source's own revision of this version (etcd's), served as the snapshot's revision;
    #: None for a source without one (a file: the store counts its versions).
    revision: int | None = None

    @property
    def loaded(self) -> bool:
        return self.content_hash is not None


@attrs.frozen
class SourceOutcome:
    """One source after a load attempt: its state to serve, and why it failed (None if it did not)."""

    state: SourceState
    error: str | None


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_state(path: str, digest: str, parsed: ParsedSource) -> SourceState:
    """What a snapshot keeps of a parsed source (not the decoded document: nothing reads it)."""
    return SourceState(path=path, content_hash=digest, format=parsed.format, flags=parsed.flags,
                       problems=tuple(parsed.problems), signatures=parsed.signatures, context=parsed.context)


Changed = Callable[[str], Awaitable[Any]]


class Source(Protocol):
    """One place flags come from, in the order the store merges them (later wins on a key)."""

    #: The source's name in health, events and logs (a path or a URL).
    name: str

    def load(self, previous: SourceState, options: LoadOptions) -> SourceOutcome:
        """The newest version, parsed; ``previous`` (with the error) when it cannot be loaded.

        Blocking: called in a worker thread, one load of all sources at a time.
        """
        ...

    def status(self) -> dict[str, Any]:
        """What health shows beyond the content: ``kind``, and for a remote source ``stale``
        (serving a version that may be out of date) and ``fetched_at`` (Unix time)."""
        ...

    async def watch(self, changed: Changed, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled, awaiting ``changed(why)`` whenever a newer version may exist.

        Calls ``task_status.started()`` once it is really watching.
        """
        ...
