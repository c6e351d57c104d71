"""`agent`: the principal's one long-running owner (docs/client.md, "The agent").

`backchannel agent` unlocks the state once, starts the agent in the background and
returns when it answers on its socket; `--foreground` keeps it in the terminal (or under
a service manager, with `--passphrase-fd`). While it runs, every principal command of the
CLI is served by it, and `watch` shows its events.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Final

import typer

from backchannel.cli.context import (
    JSON_OPTION,
    PASSPHRASE_ENV,
    CliContext,
    cli_context,
    exit_with,
    reports_errors,
)
from backchannel.cli.exitcodes import ExitCode
from backchannel.cli.hints import command_hint
from backchannel.client.errors import ClientError, HomeBusy

__all__ = ["agent_hello", "register"]

# Seconds the background start waits for the agent to answer (Argon2id, then the relays).
_START_TIMEOUT: Final = 30.0
# The largest passphrase read from a file descriptor; more is certainly not one.
_MAX_PASSPHRASE: Final = 4096


def _passphrase_from_fd(fd: int) -> str:
    with os.fdopen(fd, "rb", closefd=True) as stream:
        raw = stream.read(_MAX_PASSPHRASE + 1)
    if len(raw) > _MAX_PASSPHRASE:
        raise ClientError(f"--passphrase-fd {fd} gave more than {_MAX_PASSPHRASE} bytes")
    text = raw.decode("utf-8", "strict").rstrip("\r\n")
    if not text:
        raise ClientError(f"--passphrase-fd {fd} gave an empty passphrase")
    return text


# What `agent --status --json` and `--stop --json` report of the agent's `hello`.
_STATUS_KEYS: Final = ("pid", "name", "requests_served")


def _emit(data: dict[str, object]) -> None:
    # As `output.emit_json` prints it, without importing the client's types for it.
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def agent_hello(state: CliContext) -> dict[str, object] | None:
    """The running agent's `hello`, or None when no agent answers for the home."""
    from backchannel.client.agent.client import AgentUnavailable, connect

    try:
        with connect(state.home) as connection:
            return connection.call("hello")
    except AgentUnavailable:
        return None


def _run_foreground(state: CliContext) -> None:
    from backchannel.cli.watching import emitter, serve_as_agent
    from backchannel.client.agent.handle import AgentPrincipal
    from backchannel.client.agent.lock import HomeLock

    # Until the loop takes SIGTERM over (it then stops after committing), a SIGTERM while
    # unlocking ends the process cleanly instead of by the signal: nothing is open yet.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    holder = HomeLock(state.home).holder()
    passphrase = state.passphrase()
    try:
        # A second, not zero: a command's launcher may be peeking at the lock this instant.
        # read_only=False: an agent writes all the time (duties, the socket), so a
        # read-only home is refused at once (`HomeReadOnly`) rather than served badly.
        # An agent's handle: its requests send over its relay connections.
        principal = AgentPrincipal.open(state.home, passphrase, lock_timeout=1.0,
                                        lock_role="agent", read_only=False)
    except HomeBusy:
        if holder is not None and holder.role == "agent":
            raise ClientError(f"an agent already runs on {state.home} (pid {holder.pid})") from None
        raise
    with principal:
        names = [c.name for c in principal.channels()]
        state.err.print(
            f"Agent for '{principal.name}' (pid {os.getpid()}): {len(names)} channel(s); "
            "to stop it, Ctrl-C or: " + command_hint(state, "agent", "--stop"),
            soft_wrap=True,
        )
        report = asyncio.run(serve_as_agent(principal, emitter(state)))
    state.err.print(f"Agent stopped: {report.received} received, {report.sent} sent.")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _start_background(state: CliContext) -> None:
    running = agent_hello(state)
    if running is not None:
        raise ClientError(f"an agent already runs on {state.home} (pid {running.get('pid')})")
    passphrase = state.passphrase()
    read_end, write_end = os.pipe()
    log = open(state.home / "agent.log", "ab")  # noqa: SIM115 - handed to the child
    os.chmod(state.home / "agent.log", 0o600)
    command = [
        sys.executable, "-c", "from backchannel.cli.main import run_here; run_here()",
        "--home", str(state.home), "agent", "--foreground", "--passphrase-fd", str(read_end),
    ]
    env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
    child = subprocess.Popen(
        command, pass_fds=(read_end,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        env=env, start_new_session=True,
    )
    os.close(read_end)
    with os.fdopen(write_end, "wb") as pipe:
        pipe.write(passphrase.encode())
    log.close()
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise ClientError(
                f"the agent exited with code {child.returncode}; see {state.home / 'agent.log'}"
            )
        if agent_hello(state) is not None:
            if state.json:
                _emit({"started": True, "pid": child.pid, "log": str(state.home / "agent.log")})
                return
            state.out.print(f"Agent started (pid {child.pid}); log in {state.home / 'agent.log'}.")
            return
        time.sleep(0.05)
    raise ClientError(f"the agent did not answer within {_START_TIMEOUT:g} s")


def agent(
    ctx: typer.Context,
    foreground: bool = typer.Option(
        False, "--foreground", help="Stay in this terminal (or under a service manager)."
    ),
    passphrase_fd: int | None = typer.Option(
        None, "--passphrase-fd", metavar="N",
        help="Read the passphrase from file descriptor N (for a service manager).",
    ),
    stop: bool = typer.Option(False, "--stop", help="Stop the running agent."),
    show: bool = typer.Option(False, "--status", help="Say whether an agent runs."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the principal's agent: the one process that owns its state and relays.

    It unlocks the state once, keeps every channel's duties (receipts, line tests,
    deadlines and escalations, the outbox) without pause, and serves a local API on a
    socket in the home (this user only). While it runs, every other command goes through
    it, and `watch` shows its events. Without `--foreground` it starts in the
    background and logs to HOME/agent.log.

    Example: backchannel --home ~/bc/washington agent
    """
    state = cli_context(ctx, as_json)
    if passphrase_fd is not None:
        state._passphrase = _passphrase_from_fd(passphrase_fd)
    if stop or show:
        running = agent_hello(state)
        if state.json:
            _emit({"running": running is not None, "stopping": stop and running is not None,
                   **{key: (running or {}).get(key) for key in _STATUS_KEYS}})
        if running is None:
            if not state.json:
                state.out.print(f"No agent runs on {state.home}.")
            if stop:
                raise exit_with(ExitCode.FAILURE, f"no agent runs on {state.home}", state)
            return
        if stop:
            from backchannel.client.agent.client import connect

            with connect(state.home) as connection:
                connection.call("stop")
            if not state.json:
                state.out.print(f"Agent (pid {running.get('pid')}) stopping.")
        elif not state.json:
            state.out.print(
                f"Agent for '{running.get('name')}' runs (pid {running.get('pid')}), "
                f"{running.get('requests_served')} request(s) served."
            )
        return
    if foreground:
        _run_foreground(state)
    else:
        _start_background(state)


def register(app: typer.Typer) -> None:
    """Add `agent` to the root app."""
    app.command()(reports_errors(agent))
