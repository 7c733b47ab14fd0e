"""Run a piece of a test as another user: a forked child that drops to that user, then reports back.

Fork, not exec: the interpreter may live where ``nobody`` cannot execute it (under /root). The
child runs only standard-library code and leaves with ``os._exit``, so no test machinery
(pytest's, trio's) runs twice.
"""

from __future__ import annotations

import grp
import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

NOBODY = 65534
NOGROUP = 65534


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: these tests act as other real users (run the suite as root, e.g. in a container)")


def as_user(fn: Callable[[], Any], *, uid: int = NOBODY, gid: int = NOGROUP, groups: Sequence[int] = ()) -> Any:
    """Run ``fn()`` in a child process with exactly these credentials; its JSON-able result, or
    the exception it raised, as ``{"error": "<type>: <message>"}``.

    Blocking (waits for the child): call it through ``trio.to_thread.run_sync`` from async tests.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read_end)
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            try:
                result: Any = {"value": fn()}
            except Exception as exc:  # reported to the parent, which asserts on it
                result = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(write_end, json.dumps(result).encode())
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as r:
        while chunk := r.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child as uid {uid} failed to start (status {status})"
    answer = json.loads(b"".join(chunks))
    if "error" in answer:
        return answer
    return answer["value"]


@contextmanager
def scratch_group(members: Sequence[str] = ()) -> Iterator[grp.struct_group]:
    """A new system group for one test (removed after), with these users listed as members."""
    if not _have("groupadd"):
        pytest.skip("needs groupadd (apt-get install passwd)")
    name = f"fsk{uuid.uuid4().hex[:8]}"
    subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
    try:
        for member in members:
            subprocess.run(["gpasswd", "-a", member, name], check=True, capture_output=True)
        yield grp.getgrnam(name)
    finally:
        subprocess.run(["groupdel", name], check=False, capture_output=True)


def remove_member(group: str, member: str) -> None:
    subprocess.run(["gpasswd", "-d", member, group], check=True, capture_output=True)


def _have(program: str) -> bool:
    return any(os.access(os.path.join(d, program), os.X_OK) for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin"])
