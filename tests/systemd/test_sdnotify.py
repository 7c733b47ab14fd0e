"""Notifier and run_watchdog against a real datagram socket standing in for systemd."""

from __future__ import annotations

import logging
import os
import time

import pytest
import trio

from agent.host.sdnotify import Notifier, run_watchdog

from .conftest import NotifyRecorder


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def notifier_for(recorder: NotifyRecorder, **env: str) -> Notifier:
    return Notifier.from_environment({"NOTIFY_SOCKET": recorder.env_value, **env})


@pytest.mark.parametrize("recorder_fixture", ["notify_recorder", "abstract_notify_recorder"])
def test_ready_with_status_is_one_datagram(request, recorder_fixture) -> None:
    recorder = request.getfixturevalue(recorder_fixture)
    with notifier_for(recorder) as notifier:
        assert notifier.enabled
        assert notifier.ready("serving revision 1, 2 flags") is True
    assert recorder.receive() == {"READY": "1", "STATUS": "serving revision 1, 2 flags"}


def test_each_state_sends_its_assignment(notify_recorder: NotifyRecorder) -> None:
    with notifier_for(notify_recorder) as notifier:
        notifier.status("loading /etc/flagsock/flags.json")
        notifier.stopping()
        notifier.watchdog()
        notifier.ready()
    assert [notify_recorder.receive() for _ in range(4)] == [
        {"STATUS": "loading /etc/flagsock/flags.json"},
        {"STOPPING": "1"},
        {"WATCHDOG": "1"},
        {"READY": "1"},
    ]


def test_reloading_carries_the_monotonic_clock_in_the_same_datagram(
    notify_recorder: NotifyRecorder,
) -> None:
    with notifier_for(notify_recorder) as notifier:
        before = monotonic_usec()
        notifier.reloading("reloading")
        after = monotonic_usec()
    message = notify_recorder.receive()
    assert message.keys() == {"RELOADING", "MONOTONIC_USEC", "STATUS"}
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after


def test_status_with_newlines_stays_one_assignment(notify_recorder: NotifyRecorder) -> None:
    with notifier_for(notify_recorder) as notifier:
        notifier.status("reload failed:\nline 3\nREADY=1")
    assert notify_recorder.receive() == {"STATUS": "reload failed: line 3 READY=1"}


def test_without_notify_socket_every_call_is_a_quiet_no_op() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.reloading() is False
    assert notifier.watchdog() is False
    assert notifier.watchdog_interval() is None


def test_unsupported_address_disables_notifications(caplog) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert "neither a path nor an @abstract name" in caplog.text


def test_gone_manager_is_logged_once_and_never_raises(tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="flagsock")
    with Notifier(str(tmp_path / "nobody-listens.sock")) as notifier:
        assert notifier.watchdog() is False
        assert notifier.watchdog() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "could not notify the service manager" in warnings[0].getMessage()


def test_full_manager_queue_drops_notifications_instead_of_blocking(
    notify_recorder: NotifyRecorder,
) -> None:
    # Nobody reads the recorder: the kernel queue fills after a handful of datagrams. A
    # blocking send would hang this test; a non-blocking one reports False.
    with notifier_for(notify_recorder) as notifier:
        results = [notifier.watchdog() for _ in range(2000)]
    assert results[0] is True
    assert results[-1] is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_for_this_pid(
    notify_recorder: NotifyRecorder, env, expected
) -> None:
    assert notifier_for(notify_recorder, **env).watchdog_interval() == expected


class CountingNotifier:
    """Records when each watchdog ping happened, in trio's (virtual) time."""

    def __init__(self, interval: float | None) -> None:
        self.interval = interval
        self.pings: list[float] = []

    def watchdog_interval(self) -> float | None:
        return self.interval

    def watchdog(self) -> bool:
        self.pings.append(trio.current_time())
        return True


async def test_run_watchdog_pings_every_interval_from_the_event_loop(autojump_clock) -> None:
    notifier = CountingNotifier(1.5)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        interval = await nursery.start(run_watchdog, notifier)
        assert interval == 1.5
        assert len(notifier.pings) == 1  # the first ping goes out before started()
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert [round(t - start, 6) for t in notifier.pings] == [0, 1.5, 3, 4.5, 6, 7.5, 9]


async def test_run_watchdog_returns_at_once_without_a_watchdog(autojump_clock) -> None:
    notifier = CountingNotifier(None)
    start = trio.current_time()
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            assert await nursery.start(run_watchdog, notifier) is None
    assert notifier.pings == []
    assert trio.current_time() == start


async def test_run_watchdog_sends_real_pings(autojump_clock, notify_recorder) -> None:
    with notifier_for(notify_recorder, WATCHDOG_USEC="4000000") as notifier:
        with trio.move_on_after(5):  # pings at 0, 2 and 4 seconds
            await run_watchdog(notifier)
    assert notify_recorder.pending() == [{"WATCHDOG": "1"}] * 3


class StallingNotifier(CountingNotifier):
    """Blocks the whole (virtual) clock once, as a hung event loop would."""

    def __init__(self, interval: float, stall_at_ping: int, stall_seconds: float) -> None:
        super().__init__(interval)
        self.stall_at_ping = stall_at_ping
        self.stall_seconds = stall_seconds

    def watchdog(self) -> bool:
        super().watchdog()
        if len(self.pings) == self.stall_at_ping:
            trio.lowlevel.current_clock().jump(self.stall_seconds)
        return True


async def test_run_watchdog_resumes_after_a_stall_without_a_burst(autojump_clock) -> None:
    notifier = StallingNotifier(1.0, stall_at_ping=2, stall_seconds=3.5)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(run_watchdog, notifier)
        await trio.sleep(7)
        nursery.cancel_scope.cancel()
    # Pings at 0 and 1, a stall until 4.5, then one ping at once and every second after.
    assert [round(t - start, 6) for t in notifier.pings] == [0, 1, 4.5, 5.5, 6.5]
