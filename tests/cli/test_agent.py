"""The agent as a user meets it: real processes, a real relay, the console script."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchannel.cli.exitcodes import ExitCode
from backchannel.client.agent.client import connect
from backchannel.client.agent.lock import HomeLock
from backchannel.client.agent.paths import socket_path
from backchannel.client.agent.wire import encode_line
from backchannel.client.engine import Principal
from tests.client.conftest import FAST_KDF, pair

pytestmark = pytest.mark.timeout(180)

# What the console script runs.
CLI = [sys.executable, "-c", "from backchannel.cli.launcher import main; main()"]
ENV = {**os.environ, "BACKCHANNEL_PASSPHRASE": "passphrase", "PYTHONUNBUFFERED": "1"}


def bc(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
       ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *args], env=env or ENV, input=stdin, capture_output=True,
                          text=True, timeout=90)
    if ok:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


@pytest.fixture()
def homes(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    db = tmp_path / "relay.db"
    relay = subprocess.Popen(
        [*CLI, "relay", "serve", "--host", "127.0.0.1", "--port", "0", "--db", f"sqlite:///{db}",
         "--no-metrics"],
        stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert relay.stderr is not None
        url = str(json.loads(relay.stderr.readline())["url"])

        async def paired() -> None:
            a = Principal.create(tmp_path / "alice", "alice", "passphrase", kdf=FAST_KDF)
            b = Principal.create(tmp_path / "bob", "bob", "passphrase", kdf=FAST_KDF)
            await pair(a, b, [url])
            await a.sync()
            a.close()
            b.close()

        asyncio.run(paired())
        yield tmp_path / "alice", tmp_path / "bob", url
    finally:
        for home in (tmp_path / "alice", tmp_path / "bob"):
            bc("--home", str(home), "agent", "--stop", ok=False)
        relay.send_signal(signal.SIGTERM)
        relay.wait(30)


def test_commands_print_the_same_through_the_agent(homes: tuple[Path, Path, str]) -> None:
    alice, _bob, _ = homes
    bc("--home", str(alice), "send", "bob", "before the agent")
    here = [bc("--home", str(alice), *c).stdout
            for c in (["channels"], ["inbox", "--json"], ["verify", "bob"])]
    started = bc("--home", str(alice), "agent")
    assert "Agent started" in started.stdout
    there = [bc("--home", str(alice), *c).stdout
             for c in (["channels"], ["inbox", "--json"], ["verify", "bob"])]
    assert there == here
    with connect(alice) as agent:
        assert agent.call("hello")["requests_served"] == 3
    # An error keeps its text and exit code.
    missing = bc("--home", str(alice), "send", "nobody", "x", ok=False)
    assert missing.returncode == ExitCode.NOT_FOUND
    assert missing.stderr.startswith("error: no channel 'nobody'")
    usage = bc("--home", str(alice), "send", ok=False)
    assert usage.returncode == ExitCode.USAGE
    # --json before or after the command: the error is the same one object on stderr.
    for argv in (["--json", "send", "nobody", "x"], ["send", "nobody", "x", "--json"]):
        failed = bc("--home", str(alice), *argv, ok=False)
        assert failed.returncode == ExitCode.NOT_FOUND and failed.stdout == ""
        assert json.loads(failed.stderr)["error"]["code"] == "not_found"
    # `-` reads the text from the caller's stdin; a pipe gets unpadded lines.
    bc("--home", str(alice), "send", "bob", "-", stdin="through the agent, from stdin\n")
    with connect(alice) as agent:
        assert agent.call("hello")["requests_served"] == 8
    running = json.loads(bc("--home", str(alice), "--json", "agent", "--status").stdout)
    assert running["running"] is True and running["name"] == "alice"
    board = bc("--home", str(alice), "status").stdout
    assert board and all(line == line.rstrip() for line in board.splitlines())


def test_history_is_the_same_with_and_without_the_agent(homes: tuple[Path, Path, str]) -> None:
    alice, bob, _ = homes
    bc("--home", str(alice), "send", "bob", "for the record")
    bc("--home", str(bob), "sync")
    bc("--home", str(alice), "sync")  # the receipts are in before the agent's first sync
    commands = (["history", "bob"], ["history", "bob", "--json", "--limit", "1"])
    here = [bc("--home", str(alice), *c).stdout for c in commands]
    assert "for the record" in here[0]
    bc("--home", str(alice), "agent")
    there = [bc("--home", str(alice), *c).stdout for c in commands]
    assert there == here
    with connect(alice) as agent:
        page = agent.call("history", {"channel": "bob", "limit": 1})
        assert page == json.loads(here[1])
        with pytest.raises(OSError, match="positive integer"):
            agent.call("history", {"channel": "bob", "limit": 0})


def test_typed_intents_answer_with_the_documented_json(homes: tuple[Path, Path, str]) -> None:
    alice, bob, url = homes
    bc("--home", str(alice), "agent")
    with connect(alice) as agent:
        sent = agent.call("send", {"channel": "bob", "text": "through the API",
                                   "precedence": "flash", "ack_within": "10m"})
        assert sent["stored_on"] == [url]
        status = agent.call("status", {"channel": "bob"})
        assert status["channels"][0]["sent"] == 1
        assert status["channels"][0]["forks"] == []
        with pytest.raises(OSError, match="must be a non-empty string"):
            agent.call("send", {"channel": "bob"})
        with pytest.raises(OSError, match="no method"):
            agent.call("nonsense")
    bc("--home", str(bob), "sync")
    inbox = json.loads(bc("--home", str(bob), "inbox", "--json").stdout)["messages"]
    assert [m["text"] for m in inbox] == ["through the API"]
    assert inbox[0]["precedence"] == "flash"


def test_piped_input_reaches_a_command_run_by_the_agent(homes: tuple[Path, Path, str]) -> None:
    alice, bob, url = homes
    code = bc("--home", str(bob), "invite", "--relay", url).stdout.strip()
    bc("--home", str(alice), "agent")
    joined = bc("--home", str(alice), "accept", "-", "--name", "bob-two", stdin=code + "\n")
    assert "bob" in joined.stdout
    names = bc("--home", str(alice), "channels").stdout
    assert "bob-two" in names


def test_watch_is_a_view_of_the_agents_events(homes: tuple[Path, Path, str]) -> None:
    alice, bob, _ = homes
    bc("--home", str(alice), "agent")
    view = subprocess.Popen([*CLI, "--home", str(alice), "watch", "--json"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        bc("--home", str(bob), "send", "alice", "seen by the view")
        assert view.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            event = json.loads(view.stdout.readline())
            if event.get("event") == "message":
                assert event["text"] == "seen by the view"
                break
        else:
            pytest.fail("no message event")
    finally:
        view.send_signal(signal.SIGINT)
        view.wait(10)


def test_a_command_waits_for_the_home_then_says_who_holds_it(
    homes: tuple[Path, Path, str]
) -> None:
    alice, _bob, _ = homes
    lock = HomeLock(alice)
    lock.acquire(role="command")
    try:
        env = {**ENV, "BACKCHANNEL_LOCK_TIMEOUT": "0.5"}
        done = bc("--home", str(alice), "status", env=env, ok=False)
    finally:
        lock.release()
    assert done.returncode == 1
    assert f"waiting for another backchannel process on {alice} (pid {os.getpid()})" in done.stderr
    assert "gave up after 0.5 s" in done.stderr


def test_the_agent_reads_its_passphrase_from_a_descriptor(
    homes: tuple[Path, Path, str]
) -> None:
    alice, _bob, _ = homes
    read_end, write_end = os.pipe()
    os.write(write_end, b"passphrase\n")
    os.close(write_end)
    env = {k: v for k, v in ENV.items() if k != "BACKCHANNEL_PASSPHRASE"}
    agent = subprocess.Popen(
        [*CLI, "--home", str(alice), "agent", "--foreground", "--passphrase-fd", str(read_end)],
        env=env, pass_fds=(read_end,), stderr=subprocess.PIPE, text=True)
    os.close(read_end)
    try:
        deadline = time.monotonic() + 30
        while not socket_path(alice).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # No passphrase in this command's environment either: the agent has it.
        status = bc("--home", str(alice), "status", "--json", env=env)
        assert json.loads(status.stdout)["channels"][0]["name"] == "bob"
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0


def test_the_local_api_refuses_what_is_not_its_protocol(homes: tuple[Path, Path, str]) -> None:
    alice, _bob, _ = homes
    bc("--home", str(alice), "agent")
    for line, expected in ((b"not json\n", "not JSON"),
                           (b'{"v": 9, "id": 1, "method": "hello"}\n', "unsupported API")):
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(socket_path(alice)))
            raw.sendall(line)
            answer = json.loads(raw.makefile("rb").readline())
            assert expected in answer["error"]["message"]
    # The agent is still there for the next honest request.
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(socket_path(alice)))
        raw.sendall(encode_line({"id": 5, "method": "hello", "params": {}}))
        assert json.loads(raw.makefile("rb").readline())["result"]["name"] == "alice"


def test_a_killed_agent_leaves_the_home_usable(homes: tuple[Path, Path, str]) -> None:
    alice, _bob, _ = homes
    bc("--home", str(alice), "agent")
    with connect(alice) as agent:
        pid = int(agent.call("hello")["pid"])
        refused = agent.call("cli", {"argv": ["relay", "serve"]})
        assert refused["code"] == 2
        assert "not run by the agent" in refused["stderr"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    # Its socket is left behind, but nobody answers on it and the kernel dropped its lock:
    # the next command runs here.
    assert socket_path(alice).exists()
    status = bc("--home", str(alice), "status", "--json")
    assert json.loads(status.stdout)["channels"][0]["name"] == "bob"
    again = bc("--home", str(alice), "agent")
    assert "Agent started" in again.stdout


def test_a_command_waiting_for_the_home_is_handed_to_an_agent_that_takes_it(
    homes: tuple[Path, Path, str]
) -> None:
    alice, _bob, _ = homes
    worker = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("agent_takeover_worker.py")), str(alice)],
        env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdin is not None
        assert worker.stdout.readline().strip() == "holding"
        # The command finds no agent and a plain command holding the home: it waits.
        waiting = subprocess.Popen([*CLI, "--home", str(alice), "status", "--json"],
                                   env={**ENV, "BACKCHANNEL_LOCK_TIMEOUT": "20"},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert waiting.poll() is None
        worker.stdin.write("go\n")
        worker.stdin.flush()
        out, err = waiting.communicate(timeout=30)
        assert waiting.returncode == 0, err
        assert "waiting for another backchannel process" in err
        assert json.loads(out)["channels"][0]["name"] == "bob"
        with connect(alice) as agent:
            assert agent.call("hello")["requests_served"] == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


def test_meet_propose_is_served_by_the_agent_and_meet_suggest_runs_here(
    homes: tuple[Path, Path, str],
) -> None:
    alice, _bob, _ = homes
    bc("--home", str(alice), "agent")
    with connect(alice) as agent:
        served = agent.call("hello")["requests_served"]
    # It sends on the channel: without the agent it would wait for the home it holds.
    proposed = json.loads(bc("--home", str(alice), "--json", "meet", "propose", "bob",
                             "--round", "2", "--between", "Washington", "--between",
                             "Beijing").stdout)
    assert proposed["venue"]
    # Only computes: run where it was typed, so the agent serves nothing for it.
    bc("--home", str(alice), "meet", "suggest", "--between", "Washington", "--between",
       "Beijing")
    with connect(alice) as agent:
        assert agent.call("hello")["requests_served"] == served + 1


@pytest.mark.parametrize(("argv", "served"), [
    (["meet", "propose", "bob", "--round", "2"], True),
    (["--home", "h", "meet", "propose", "bob"], True),
    (["meet", "suggest", "-b", "Oslo", "-b", "Bern"], False),
    (["meet"], False),
    (["relay", "serve"], False),
    (["send", "bob", "x"], True),
])
def test_the_launcher_hands_a_running_agent_what_uses_the_principal(
    argv: list[str], served: bool,
) -> None:
    from backchannel.cli.launcher import command_of, served_by_agent

    command = command_of(argv)
    assert command is not None and served_by_agent(argv, command) is served


def _queued(home: Path) -> int:
    board = json.loads(bc("--home", str(home), "status", "bob", "--json").stdout)
    return int(board["channels"][0]["queued"])


def test_send_no_wait_returns_queued_and_the_agent_sends_it(
        homes: tuple[Path, Path, str]) -> None:
    alice, bob, _ = homes
    # Without an agent nothing sends it: it waits in the outbox, exit 0, until a sync.
    here = json.loads(bc("--home", str(alice), "send", "bob", "first", "--no-wait",
                         "--json").stdout)
    assert (here["waited"], here["queued"], here["stored_on"]) == (False, True, [])
    told = bc("--home", str(alice), "send", "bob", "second", "--no-wait").stdout
    assert "not sent yet" in told and "backchannel" in told and "sync" in told
    assert _queued(alice) == 2
    bc("--home", str(bob), "sync")
    assert json.loads(bc("--home", str(bob), "inbox", "--json").stdout)["messages"] == []
    # The agent takes them from the outbox, and what is sent through it after them.
    bc("--home", str(alice), "agent")
    there = bc("--home", str(alice), "send", "bob", "third", "--no-wait").stdout
    assert "the agent sends it now" in there
    with connect(alice) as agent:
        sent = agent.call("send", {"channel": "bob", "text": "fourth", "wait": False})
        assert (sent["waited"], sent["stored_on"]) == (False, [])
        with pytest.raises(OSError, match="'wait' is true or false"):
            agent.call("send", {"channel": "bob", "text": "x", "wait": "no"})
    deadline = time.monotonic() + 20
    while _queued(alice):
        assert time.monotonic() < deadline, "the agent left notes queued"
        time.sleep(0.1)
    bc("--home", str(bob), "sync")
    inbox = json.loads(bc("--home", str(bob), "inbox", "--json").stdout)["messages"]
    assert [m["text"] for m in inbox] == ["first", "second", "third", "fourth"]
