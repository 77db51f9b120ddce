"""The live view in a real terminal (tmux): it redraws in place, one view on the screen."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest
from conftest import Recorder, require_binary, wait_for

from wsmanager import WSManager
from wsmanager.cli.view import LiveView
from wsmanager.testing import FakeExchange

HEADER = "stream                       subs"


@pytest.fixture
def tmux() -> Iterator[Callable[..., str]]:
    binary = require_binary("tmux", "tmux")
    session = f"wsmanager-{uuid.uuid4().hex[:8]}"

    def start(*command: str) -> str:
        subprocess.run(
            [binary, "new-session", "-d", "-s", session, "-x", "120", "-y", "45", *command],
            check=True,
            timeout=10,
        )
        subprocess.run(
            [binary, "set-option", "-t", session, "remain-on-exit", "on"], check=True, timeout=10
        )
        return session

    yield start
    subprocess.run([binary, "kill-session", "-t", session], check=False, timeout=10)


def _capture(session: str) -> str:
    result = subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, timeout=10
    )
    return result.stdout


@pytest.mark.timeout(60)
def test_the_demo_redraws_one_view_in_place(tmux: Callable[..., str]) -> None:
    session = tmux(sys.executable, "-m", "wsmanager", "demo", "--seconds", "6")
    screens: list[str] = []

    def two_ticks_shown() -> bool:
        screen = _capture(session)
        if "t=2." in screen or "t=3." in screen:
            screens.append(screen)
            return True
        return False

    assert wait_for(two_ticks_shown, 20, interval=0.2)
    screen = screens[-1]
    assert screen.count(HEADER) == 1, screen  # redrawn in place, not scrolled
    assert screen.count("wsmanager  ws://127.0.0.1:") == 1
    assert "connections 1 open" in screen and "for 5 streams" in screen
    assert "budget 1/300 attempts per 300s" in screen or "budget 2/300" in screen
    assert "btcusdt@trade" in screen and "healthy" in screen
    assert wait_for(lambda: "== summary ==" in _capture(session), 20, interval=0.2)


def test_the_view_prints_plain_blocks_when_not_a_terminal(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    manager = make_manager(streams_per_connection=200)
    recorder = Recorder()
    manager.subscribe("btcusdt@trade", recorder)
    manager.subscribe("ethusdt@trade", recorder)
    assert exchange.wait_until(lambda: exchange.open_connections() == 1)
    out = io.StringIO()
    view = LiveView(manager, out)
    assert not view.interactive
    exchange.publish("btcusdt@trade")
    exchange.skip("btcusdt@trade", 2)
    exchange.publish("btcusdt@trade")
    assert recorder.wait_messages(2)
    assert wait_for(lambda: manager.get_metrics().gaps == 1)
    view.tick()
    view.tick()
    text = out.getvalue()
    assert "\x1b[" not in text  # no terminal control codes in a pipe
    assert text.count(HEADER) == 2
    assert "connections 1 open (hwm 1) for 2 streams, 2 subscribers" in text
    assert "budget: off" in text
    rows = [line.split() for line in text.splitlines() if line.startswith("btcusdt@trade")]
    assert rows[0][5] == "1"  # the gap, in the stream's row
    assert "gaps 1" in text
