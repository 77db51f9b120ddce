"""``wsmanager user-data``: events as JSON lines, secrets only from the environment or a file."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from conftest import SCALE, wait_for
from userdata_helpers import HMAC_KEY, HMAC_SECRET, event, new_ed25519, private_pem, public_pem

from wsmanager.cli.main import main
from wsmanager.testing import FakeExchange


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange(ws_api=True) as fake:
        fake.add_account(HMAC_KEY, secret=HMAC_SECRET)
        yield fake


def _run(argv: list[str], exchange: FakeExchange, api_key: str) -> int:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(main(argv)))
    thread.start()
    assert wait_for(lambda: exchange.user_subscription_count(api_key) == 1)
    exchange.push_user_event(api_key, event(1))
    exchange.push_user_event(api_key, event(2))
    thread.join(10 * SCALE)
    assert not thread.is_alive()
    return codes[0]


def test_events_are_printed_as_json_lines_and_the_secret_never(
    exchange: FakeExchange, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEST_UD_KEY", HMAC_KEY)
    monkeypatch.setenv("TEST_UD_SECRET", HMAC_SECRET)
    argv = ["-v", "user-data", "--api-key-env", "TEST_UD_KEY", "--secret-env", "TEST_UD_SECRET"]
    argv += ["--url", exchange.ws_api_url, "--count", "2"]
    assert _run(argv, exchange, HMAC_KEY) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == [event(1), event(2)]
    assert HMAC_SECRET not in out + err and HMAC_KEY not in out + err


def test_an_ed25519_key_from_a_file(
    exchange: FakeExchange,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    key = new_ed25519()
    exchange.add_account("EdCliKey1234", public_key_pem=public_pem(key))
    (tmp_path / "key.pem").write_bytes(private_pem(key))
    monkeypatch.setenv("TEST_UD_KEY", "EdCliKey1234")
    argv = ["user-data", "--api-key-env", "TEST_UD_KEY", "--private-key", str(tmp_path / "key.pem")]
    argv += ["--url", exchange.ws_api_url, "--count", "2"]
    assert _run(argv, exchange, "EdCliKey1234") == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_a_refused_key_exits_1_and_missing_secrets_exit_2(
    exchange: FakeExchange, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEST_UD_KEY", HMAC_KEY)
    monkeypatch.setenv("TEST_UD_SECRET", "not-the-secret")
    url = ["--url", exchange.ws_api_url]
    argv = ["user-data", "--api-key-env", "TEST_UD_KEY", "--secret-env", "TEST_UD_SECRET", *url]
    assert main(argv) == 1
    assert "-1022" in capsys.readouterr().err
    missing = ["user-data", "--api-key-env", "TEST_UD_NOPE", "--secret-env", "TEST_UD_SECRET"]
    assert main([*missing, *url]) == 2
    assert "TEST_UD_NOPE" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no option takes a secret itself
        main(["user-data", "--api-key-env", "TEST_UD_KEY", "--secret", "abc"])
