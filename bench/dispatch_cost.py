"""CPU time of the NDJSON dispatch alone (decode, op, evaluate, encode): one tree's agent, in-process.

    PYTHONPATH=TREE .venv/bin/python bench/dispatch_cost.py FLAG_FILE FLAG [ROUNDS]

Prints one number: microseconds of CPU per request, best of ROUNDS rounds over 1,000 request lines.
``bench_observe.py --only dispatch`` runs it for the tree before issue 16 and this one, alternating;
no socket, no scheduler, no load generator: what the request path itself costs, and so the
steadiest comparison on a shared machine.
"""

from __future__ import annotations

import json
import socket
import sys
import time

from agent.engine.formats.document import parse_flag_document
from agent.frontends.access import WriteAccess
from agent.frontends.ndjson.server import Server
from agent.frontends.service import Service
from agent.sources.base import LoadOptions, SourceOutcome, content_hash, source_state
from agent.store.loading import build
from agent.store.peer import UNKNOWN_PEER
from agent.store.reloader import Reloader
from agent.store.store import Store


class _Conn:
    peer = UNKNOWN_PEER
    subscription = None


def main() -> None:
    path, flag = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    data = open(path, "rb").read()
    parsed = parse_flag_document(data, path)
    store = Store([path])
    store.install(build([SourceOutcome(source_state(path, content_hash(data), parsed), None)], store.snapshot.flags, 0))
    service = Service(store=store, reloader=Reloader(store, [], LoadOptions()), access=WriteAccess(frozenset(), frozenset()),
                      version="bench")
    with socket.socket(socket.AF_UNIX) as sock:
        server = Server(service, sock, max_connections=10, max_line_bytes=1 << 20, send_timeout=1.0)
        lines = [json.dumps({"op": "evaluate", "id": i, "flag": flag, "context": {"targetingKey": f"user-{i}"}},
                            separators=(",", ":")).encode() for i in range(1000)]
        conn = _Conn()
        answer = server._answer_sync
        assert b'"ok":true' in answer(conn, lines[0])
        best = float("inf")
        for _ in range(rounds):
            start = time.process_time()
            for _ in range(20):
                for line in lines:
                    answer(conn, line)
            best = min(best, (time.process_time() - start) / (20 * len(lines)))
    print(f"{best * 1e6:.3f}")


if __name__ == "__main__":
    main()
