"""flagd's scenarios again, this time through a real agent process and its socket.

Each flag set (and bucketing version) a scenario needs is served by its own ``flagsock serve
--invalid-flags isolate --fractional vN`` subprocess, started once per session; the
"evaluated with details" step sends ``evaluate`` over the socket and reads the wire answer back
into the shape the ``Then`` steps check. This proves the wire keeps what the engine decides:
values of every type, variants, reasons, error codes and metadata.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest

from agent.engine.model import Resolution
from tests.process import AgentProcess

from .gherkin import Scenario
from .steps import Suite, Where, World, combined_document, run, skip_reason
from .test_conformance import _cases


class _Agents:
    """One agent subprocess per (flag files, bucketing version), started on first use."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fsk-conf-", dir="/tmp"))
        self.running: dict[tuple[Any, ...], AgentProcess] = {}

    def socket_for(self, where: Where, fractional: str) -> str:
        key = (where.files, where.extra, fractional)
        if key not in self.running:
            n = len(self.running)
            flags = self.dir / f"flags{n}.json"
            flags.write_bytes(combined_document(where.files))
            extra = ["--flags", str(where.extra), "--write-to", str(flags)] if where.extra else []
            agent = AgentProcess(["--flags", str(flags), *extra, "--socket", str(self.dir / f"a{n}.sock"),
                                  "--invalid-flags", "isolate", "--fractional", fractional,
                                  "--log-level", "warning"])
            self.running[key] = agent.__enter__()
        return self.running[key].socket_path

    def close(self) -> None:
        for agent in self.running.values():
            agent.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def agents():
    pool = _Agents()
    yield pool
    pool.close()


def _ask(path: str, request: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(s.makefile("rb").readline())


def socket_backend(agents: _Agents):
    def evaluate(world: World) -> Resolution:
        where = world.suite.where(world.options.get("selector"))
        path = agents.socket_for(where, world.fractional)
        request = {"op": "evaluate", "flag": world.key, "type": world.flag_type.lower(), "default": world.default}
        if where.flag_set is not None:
            request["selector"] = f"flagSetId={where.flag_set}"
        if world.context:
            request["context"] = world.context
        answer = _ask(path, request)
        if not answer["ok"]:
            # The wire reports evaluation failures as errors; the caller keeps its default.
            error = answer["error"]
            return Resolution(key=world.key, value=world.default, variant=None, reason="ERROR",
                              error_code=error["code"], error_message=error["message"])
        result = answer["result"]
        assert result["key"] == world.key and isinstance(result["revision"], int)
        return Resolution(key=world.key, value=result.get("value"), variant=result["variant"],
                          reason=result["reason"], metadata=result["metadata"])

    return evaluate


@pytest.mark.parametrize(("scenario", "suite"), _cases())
def test_flagd_scenario_through_the_socket(scenario: Scenario, suite: Suite, agents: _Agents) -> None:
    reason = skip_reason(scenario)
    if reason:
        pytest.skip(reason)
    run(scenario, suite, backend=socket_backend(agents))
