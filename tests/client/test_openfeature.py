"""The OpenFeature provider through the SDK, against a real agent."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pytest

pytest.importorskip("openfeature")

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus

from protocol.openfeature import FlagsockProvider

from .conftest import Agent, boolean_flag, edited

WAIT_S = 5.0


class Events:
    """Queues what the SDK hands to ``client.add_handler`` for each provider event."""

    def __init__(self, client) -> None:
        self.q: queue.Queue[tuple[ProviderEvent, EventDetails]] = queue.Queue()
        for kind in ProviderEvent:
            client.add_handler(kind, lambda details, kind=kind: self.q.put((kind, details)))

    def next(self, kind: ProviderEvent) -> EventDetails:
        """The next event of ``kind``, skipping others, waiting at most WAIT_S."""
        while True:
            got, details = self.q.get(timeout=WAIT_S)
            if got == kind:
                return details


@pytest.fixture
def sdk() -> Iterator[None]:
    yield
    api.shutdown()
    api.clear_providers()


def use(provider: FlagsockProvider):
    api.set_provider(provider, domain="flagsock-tests")
    return api.get_client(domain="flagsock-tests")


def test_all_five_types_resolve_through_the_sdk(served: Agent, sdk: None) -> None:
    client = use(FlagsockProvider(served.socket_path, timeout=2.0))
    Events(client).next(ProviderEvent.PROVIDER_READY)
    assert client.get_provider_status() == ProviderStatus.READY

    b = client.get_boolean_details("dark_mode", False)
    assert (b.value, b.variant, b.reason, b.error_code) == (True, "on", Reason.STATIC, None)
    s = client.get_string_details("banner", "fallback")
    assert (s.value, s.flag_metadata["team"]) == ("Hello", "web")
    assert client.get_integer_value("max_items", 0) == 30
    f = client.get_float_details("ratio", 1.0)
    assert (f.value, f.error_code) == (0.25, None)
    assert client.get_object_value("layout", {}) == {"columns": 3}
    vip = client.get_boolean_details("vip", False, EvaluationContext("user_123"))
    assert (vip.value, vip.reason) == (True, Reason.TARGETING_MATCH)
    assert client.get_boolean_value("vip", True, EvaluationContext("nobody", {"plan": "free"})) is False


def test_errors_map_to_openfeature_codes(served: Agent, sdk: None) -> None:
    client = use(FlagsockProvider(served.socket_path, timeout=2.0))
    Events(client).next(ProviderEvent.PROVIDER_READY)
    missing = client.get_string_details("no_such_flag", "fallback")
    assert (missing.value, missing.reason, missing.error_code) == ("fallback", Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
    wrong = client.get_integer_details("banner", 5)
    assert (wrong.value, wrong.error_code) == (5, ErrorCode.TYPE_MISMATCH)
    disabled = client.get_boolean_details("retired", True)
    assert (disabled.value, disabled.reason, disabled.error_code) == (True, Reason.DISABLED, None)


def test_flag_changes_emit_configuration_changed(agent: Agent, sdk: None) -> None:
    client = use(FlagsockProvider(agent.socket_path, timeout=2.0))
    events = Events(client)
    events.next(ProviderEvent.PROVIDER_READY)
    assert client.get_boolean_value("dark_mode", False) is True
    agent.write_flags(edited(dark_mode=boolean_flag(False)))
    changed = events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
    assert changed.flags_changed == ["dark_mode"]
    assert changed.provider_name == "flagsock"
    assert client.get_boolean_value("dark_mode", True) is False


def test_losing_the_agent_goes_stale_then_error_then_ready_again(agent: Agent, sdk: None) -> None:
    client = use(FlagsockProvider(agent.socket_path, timeout=1.0, error_after=0.2))
    events = Events(client)
    events.next(ProviderEvent.PROVIDER_READY)
    agent.stop()
    events.next(ProviderEvent.PROVIDER_STALE)
    down = client.get_boolean_details("dark_mode", False)
    assert (down.value, down.reason) == (False, Reason.ERROR)
    assert down.error_code in (ErrorCode.PROVIDER_NOT_READY, ErrorCode.GENERAL)
    error = events.next(ProviderEvent.PROVIDER_ERROR)
    assert error.error_code == ErrorCode.PROVIDER_NOT_READY
    assert client.get_provider_status() == ProviderStatus.ERROR
    agent.start()
    events.next(ProviderEvent.PROVIDER_READY)
    assert client.get_boolean_value("dark_mode", False) is True


def test_initialize_without_an_agent_errors_then_recovers(agent: Agent, sdk: None) -> None:
    agent.stop()
    client = use(FlagsockProvider(agent.socket_path, init_timeout=0.1))
    events = Events(client)
    events.next(ProviderEvent.PROVIDER_ERROR)
    assert client.get_boolean_value("dark_mode", False) is False
    agent.start()
    events.next(ProviderEvent.PROVIDER_READY)
    assert client.get_boolean_value("dark_mode", False) is True


def test_shutdown_leaves_no_thread_behind(served: Agent) -> None:
    before = set(threading.enumerate())
    provider = FlagsockProvider(served.socket_path)
    provider.initialize(EvaluationContext())
    assert provider.resolve_boolean_details("dark_mode", False).value is True
    provider.shutdown()
    assert {t for t in set(threading.enumerate()) - before if t.name.startswith("flagsock")} == set()
    after = provider.resolve_boolean_details("dark_mode", False)
    assert (after.value, after.error_code) == (False, ErrorCode.PROVIDER_NOT_READY)
