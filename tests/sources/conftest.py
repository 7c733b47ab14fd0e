from __future__ import annotations

import pytest

from tests.sources.webserver import FlagServer


@pytest.fixture
def flag_server():
    server = FlagServer()
    yield server
    server.stop()
