"""Fixtures for the security tests: directories other real users can reach."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def open_dir():
    """A root-owned directory under /tmp that every user may enter (mode 0755), removed after.

    A test's ``tmp_path`` lies under /tmp/pytest-of-root (mode 0700), where ``nobody`` cannot go.
    The name is short, so sockets fit in it too.
    """
    d = Path(tempfile.mkdtemp(prefix="fsk-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
