"""The console over an agent, with real parts: a relay on 127.0.0.1, real homes, and
either a `backchannel agent` process the console is a client of (it never opens the
home), or the agent the console runs in its own process (a command typed in another
terminal is served by it)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from backchannel.client.agent.paths import socket_path
from backchannel.client.engine import Principal
from backchannel.tui.app import ConsoleApp
from backchannel.tui.dialogs import Compose, Reading
from backchannel.tui.source import AgentSource, ConsoleRefused, embedded_agent
from tests.cli.test_agent import CLI, ENV, bc
from tests.client.conftest import FAST_KDF

from .conftest import PASSPHRASE, Pair
from .test_acts import fill, select, status

pytestmark = pytest.mark.timeout(120)

SIZE = (120, 40)


@dataclass
class Agents:
    alice: Path
    bob: Path
    url: str


@pytest.fixture()
def agents(tmp_path: Path) -> Iterator[Agents]:
    """Two unpaired principals, each with its agent running, and a relay process."""
    db = tmp_path / "relay.db"
    relay = subprocess.Popen(
        [*CLI, "relay", "serve", "--host", "127.0.0.1", "--port", "0", "--db",
         f"sqlite:///{db}", "--no-metrics"], stderr=subprocess.PIPE, text=True, env=ENV)
    homes = (tmp_path / "alice", tmp_path / "bob")
    try:
        assert relay.stderr is not None
        url = str(json.loads(relay.stderr.readline())["url"])
        for home in homes:
            Principal.create(home, home.name, "passphrase", kdf=FAST_KDF).close()
            bc("--home", str(home), "agent")
        yield Agents(*homes, url)
    finally:
        for home in homes:
            bc("--home", str(home), "agent", "--stop", ok=False)
        relay.send_signal(signal.SIGTERM)
        relay.wait(30)


async def until(pilot: object, holds: Callable[[], bool]) -> None:
    """Let the console run until `holds` (bounded by the test's timeout)."""
    while not holds():
        await pilot.pause(0.05)  # type: ignore[attr-defined]


def texts(app: ConsoleApp) -> list[str]:
    return [line.text for line in app.snapshot.conversation]


async def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """A command in another process, while this loop serves (or follows) the agent."""
    return await asyncio.to_thread(bc, *args, ok=ok)


async def test_a_console_is_a_client_of_the_running_agent(agents: Agents) -> None:
    alice, bob = str(agents.alice), str(agents.bob)
    source = AgentSource(agents.alice)
    app = ConsoleApp(source)
    try:
        async with app.run_test(size=SIZE) as pilot:
            # Pairing: an invite from the console, accepted by Bob (through his agent).
            await pilot.press("i")
            await fill(app, pilot, agents.url)
            # The invite is made by the agent (mailboxes, the relays' forwarding keys):
            # its code shows once that is done.
            await until(pilot, lambda: isinstance(app.screen, Reading))
            shown = app.screen
            assert isinstance(shown, Reading)
            code = str(shown.body).split("\n", 1)[0]
            await pilot.press("escape")
            await cli("--home", bob, "accept", code, "--name", "alice")
            await until(pilot, lambda: app.snapshot.selected == "bob")
            # A note from the console, and one from Bob: a FLASH awaiting our ack.
            await pilot.press("n")
            assert isinstance(app.screen, Compose)
            app.screen.query_one("#text", Input).value = "from the console"
            app.screen._submit()
            await until(pilot, lambda: "from the console" in texts(app))
            await cli("--home", bob, "send", "alice", "incident at sea", "--flash",
                      "--ack-within", "10m")
            # The message event refreshes the console (its timer is 5 s away).
            await until(pilot, lambda: app.snapshot.flash is not None)
            assert "incident at sea" in texts(app)
            await pilot.press("a")
            await until(pilot, lambda: app.snapshot.flash is None)
            assert status(app).startswith("acknowledged"), status(app)
            # An illegal act is refused with the CLI's own message: acknowledging our
            # own note.
            await select(app, lambda line: line.text == "from the console")
            line = app.selected_line()
            assert line is not None
            await app._act("acknowledged", source.ack("bob", line.ref))
            said = await cli("--home", alice, "ack", "bob", line.ref, ok=False)
            assert status(app).startswith("error: ")
            assert status(app) == said.stderr.strip().splitlines()[-1]
            with pytest.raises(ConsoleRefused, match="no console act 'format_disk'"):
                await source.act("format_disk", {})
            # The agent goes away: the console says so, retries, and carries on.
            banner = app.query_one("#agent", Static)
            await cli("--home", alice, "agent", "--stop")
            await until(pilot, lambda: banner.has_class("shown"))
            assert "agent lost" in str(banner.content)
            await cli("--home", alice, "agent")
            await until(pilot, lambda: not banner.has_class("shown"))
            await pilot.press("l")
            await until(pilot, lambda: status(app) == "line test sent")
    finally:
        await source.close()
    # Bob has the note and the acknowledgement of his FLASH.
    inbox = json.loads((await cli("--home", bob, "inbox", "--json")).stdout)["messages"]
    assert "from the console" in [m["text"] for m in inbox]
    awaiting = json.loads((await cli("--home", bob, "status", "--json")).stdout)
    assert awaiting["channels"][0]["name"] == "alice"


async def test_the_console_runs_the_agent_and_serves_other_commands(pair: Pair) -> None:
    principal = await asyncio.to_thread(Principal.open, pair.washington, PASSPHRASE,
                                        lock_role="agent")
    try:
        async with embedded_agent(principal) as source:
            app = ConsoleApp(source)
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: app.snapshot.selected == "beijing")
                # No passphrase: the command is served by the console's agent.
                env = {k: v for k, v in ENV.items() if k != "BACKCHANNEL_PASSPHRASE"}
                done = await asyncio.to_thread(subprocess.run, [
                    *CLI, "--home", str(pair.washington), "send", "beijing",
                    "typed in another terminal"], env=env, capture_output=True, text=True,
                    timeout=60)
                assert done.returncode == 0, done.stderr
                await until(pilot, lambda: "typed in another terminal" in texts(app))
                # Beijing's note arrives through the agent's receive loop.
                beijing = await asyncio.to_thread(Principal.open, pair.beijing, PASSPHRASE)
                try:
                    from backchannel.client.strategic import StrategicChannel

                    await StrategicChannel(beijing, "washington").note("seen at once")
                finally:
                    beijing.close()
                await until(pilot, lambda: "seen at once" in texts(app))
            assert socket_path(pair.washington).exists()
    finally:
        principal.close()
    assert not socket_path(pair.washington).exists()
