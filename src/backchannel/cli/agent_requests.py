"""Running a forwarded command line inside the agent, exactly as it would run here.

The agent is one process serving several threads (its loop, and one worker per request),
so `sys.stdout`, `sys.stderr` and `sys.stdin` are replaced, once, by routers: a thread
running a request writes into its own buffers and reads the caller's piped input, every
other thread reaches the real streams. The command then runs through the same Typer app,
so its output, `--json` shapes and exit codes are those of the in-process command.
"""

from __future__ import annotations

import io
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from backchannel.cli.context import AGENT_REQUEST
from backchannel.client.engine import Principal

if TYPE_CHECKING:
    from backchannel.cli.main import LazyRoot

__all__ = ["install_stream_routers", "run_forwarded"]


class _Buffers(threading.local):
    out: io.StringIO | None = None
    err: io.StringIO | None = None
    stdin: io.TextIOWrapper | None = None


_BUFFERS = _Buffers()
_INSTALL = threading.Lock()
_ROOT_BUILT = threading.Lock()
_ROOT: list[LazyRoot] = []  # the root command, built once per process (`_root_command`)


class _Router(io.TextIOBase):
    """A text stream that is the request's buffer in a request thread, else `real`."""

    def __init__(self, real: TextIO, pick: str) -> None:
        self._real = real
        self._pick = pick

    def _target(self) -> Any:
        return getattr(_BUFFERS, self._pick) or self._real

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def buffer(self) -> Any:
        return self._target().buffer

    def write(self, text: str) -> int:
        return int(self._target().write(text))

    def flush(self) -> None:
        self._target().flush()

    def read(self, size: int | None = -1) -> str:
        return str(self._target().read(size))

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        return str(self._target().readline(size))

    def isatty(self) -> bool:
        return getattr(_BUFFERS, self._pick) is None and bool(self._real.isatty())

    def fileno(self) -> int:
        if getattr(_BUFFERS, self._pick) is not None:
            raise io.UnsupportedOperation("a request's stream has no file descriptor")
        return self._real.fileno()

    def readable(self) -> bool:
        return self._pick == "stdin"

    def writable(self) -> bool:
        return self._pick != "stdin"


def install_stream_routers() -> None:
    """Route the standard streams per thread (idempotent; done when an agent starts)."""
    with _INSTALL:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout, "out")
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr, "err")
        if not isinstance(sys.stdin, _Router):
            sys.stdin = _Router(sys.stdin, "stdin")


def run_forwarded(
    principal: Principal, argv: list[str], params: dict[str, Any]
) -> tuple[int, str, str]:
    """Run one command line against `principal` in this (worker) thread.

    Returns:
        (exit code, stdout, stderr), as the command would have produced them here.
    """
    from backchannel.cli.launcher import ALWAYS_HERE, command_of

    # Again at each request: a console running the agent in its own process redirects
    # the standard streams while it runs (Textual's print capture), after the agent began.
    install_stream_routers()
    command = command_of(argv)
    if command in ALWAYS_HERE - {"meet"} or command == "watch":
        # These own a process (a relay, a demo, another agent) or are the agent's own view:
        # run them where they were typed, never inside the agent. (`meet` owns nothing:
        # its venues are computed, and `meet propose` sends on the agent's handle.)
        return 2, "", f"error: `{command}` is not run by the agent; run it without one\n"
    stdin = params.get("stdin") or ""
    columns = params.get("columns")
    _BUFFERS.out, _BUFFERS.err = io.StringIO(), io.StringIO()
    _BUFFERS.stdin = io.TextIOWrapper(
        io.BytesIO(str(stdin).encode("utf-8", "surrogateescape")), encoding="utf-8"
    )
    AGENT_REQUEST.principal = principal
    AGENT_REQUEST.columns = columns if isinstance(columns, int) and columns > 0 else None
    code = 0
    try:
        # Standalone mode, as on the command line: usage errors are printed the same way
        # and every ending is a SystemExit carrying the exit code.
        try:
            _root_command().main(argv, prog_name="backchannel", standalone_mode=True)
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        return code, _BUFFERS.out.getvalue(), _BUFFERS.err.getvalue()
    finally:
        AGENT_REQUEST.principal = None
        AGENT_REQUEST.columns = None
        _BUFFERS.out = _BUFFERS.err = None
        _BUFFERS.stdin = None


def _root_command() -> LazyRoot:
    """The root Click command, built from the Typer app on the first request and kept.

    `app(argv)` builds the whole Click tree again on every call (each command's module
    walked, its parameters' converters made): most of a request's time in a long-lived
    agent. Built commands hold no state of an invocation (that is the Click context's),
    so one tree serves every request; requests run one at a time in any case.
    """
    with _ROOT_BUILT:
        if not _ROOT:
            import typer.main

            from backchannel.cli.main import LazyRoot, app

            root = typer.main.get_command(app)
            assert isinstance(root, LazyRoot)
            _ROOT.append(root)
        return _ROOT[0]


def _text(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{key}' must be a non-empty string")
    return value


def _optional(params: dict[str, Any], key: str) -> list[str]:
    value = params.get(key)
    if value is None:
        return []
    if not isinstance(value, str):
        raise ValueError(f"'{key}' must be a string")
    return [value]


def _paging(params: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for key in ("since", "before"):
        argv += [f"--{key}", *_optional(params, key)] if params.get(key) is not None else []
    limit = params.get("limit")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError("'limit' must be a positive integer")
        argv += ["--limit", str(limit)]
    if params.get("line_tests") is False:
        argv.append("--no-line-tests")
    return argv


def _send(params: dict[str, Any]) -> list[str]:
    argv = ["send", _text(params, "channel"), _text(params, "text")]
    precedence = params.get("precedence", "routine")
    if precedence not in ("routine", "priority", "flash"):
        raise ValueError("'precedence' is routine, priority or flash")
    argv.append(f"--{precedence}")
    if params.get("ack_within"):
        argv += ["--ack-within", _text(params, "ack_within")]
    wait = params.get("wait", True)
    if not isinstance(wait, bool):
        raise ValueError("'wait' is true or false")
    if not wait:
        argv.append("--no-wait")
    return argv


def _number(params: dict[str, Any], key: str, *, required: bool = False) -> list[str]:
    """`--KEY N` for a positive integer (nothing when absent and not `required`)."""
    value = params.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"'{key}' must be a positive integer")
    return [f"--{key}", str(value)]


def _option(params: dict[str, Any], key: str, flag: str) -> list[str]:
    """`FLAG VALUE` for an optional string parameter."""
    return [flag, *_optional(params, key)] if params.get(key) is not None else []


def _strings(params: dict[str, Any], key: str, *, least: int = 0) -> list[str]:
    value = params.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"'{key}' must be a list of non-empty strings")
    if len(value) < least:
        raise ValueError(f"'{key}' needs at least {least}")
    return list(value)


def _repeated(params: dict[str, Any], key: str, flag: str, *, least: int = 0) -> list[str]:
    return [word for value in _strings(params, key, least=least) for word in (flag, value)]


def _absolute(params: dict[str, Any], key: str) -> str:
    # The agent has its own working directory: a relative path would name another file.
    path = _text(params, key)
    if not path.startswith("/"):
        raise ValueError(f"'{key}' must be an absolute path")
    return path


def _codebook_propose(p: dict[str, Any]) -> list[str]:
    return ["codebook", "propose", _text(p, "channel"), *_number(p, "number", required=True),
            "--word", _text(p, "word"), *_repeated(p, "texts", "--lang", least=1),
            *_repeated(p, "params", "--param"), *_option(p, "precedence", "--precedence"),
            *_option(p, "ack_within", "--ack-within")]


def _verify(p: dict[str, Any]) -> list[str]:
    confirm = p.get("confirm", False)
    if not isinstance(confirm, bool):
        raise ValueError("'confirm' must be true or false")
    return ["verify", _text(p, "channel"), *(["--confirm"] if confirm else [])]


# One method per intent of a UI, each the command of the same name with `--json`: the
# answers have the shapes docs/cli.md gives, whichever way a client asks. A command of a
# group is `group.command` (`redline.add` is `redline add`).
INTENTS: dict[str, Any] = {
    "send": _send,
    "sync": lambda p: ["sync"],
    "status": lambda p: ["status", *_optional(p, "channel")],
    "channels": lambda p: ["channels"],
    "inbox": lambda p: ["inbox", *_optional(p, "channel")],
    "read": lambda p: ["read", _text(p, "channel"), *_optional(p, "message")],
    "history": lambda p: ["history", _text(p, "channel"), *_paging(p)],
    "ack": lambda p: ["ack", _text(p, "channel"), _text(p, "message")],
    "hold": lambda p: ["hold", _text(p, "channel"), _text(p, "message"),
                       "--until", _text(p, "until"), *_optional(p, "text")],
    "clarify": lambda p: ["clarify", _text(p, "channel"), _text(p, "message"),
                          _text(p, "question")],
    "answer": lambda p: ["answer", _text(p, "channel"), _text(p, "message"),
                         _text(p, "text")],
    "linetest": lambda p: ["linetest", _text(p, "channel"), "--now"],
    "redline.add": lambda p: ["redline", "add", _text(p, "channel"), _text(p, "title"),
                              _text(p, "text"), *_option(p, "update", "--update")],
    "redline.ack": lambda p: ["redline", "ack", _text(p, "channel"), _text(p, "redline"),
                              *_number(p, "version")],
    "redline.list": lambda p: ["redline", "list", *_optional(p, "channel")],
    "agenda.propose": lambda p: ["agenda", "propose", _text(p, "channel"), _text(p, "title"),
                                 *_number(p, "round", required=True),
                                 *_option(p, "detail", "--detail")],
    "agenda.accept": lambda p: ["agenda", "accept", _text(p, "channel"), _text(p, "item")],
    "agenda.decline": lambda p: ["agenda", "decline", _text(p, "channel"), _text(p, "item"),
                                 *_option(p, "reason", "--reason")],
    "agenda.show": lambda p: ["agenda", "show", _text(p, "channel"), *_number(p, "round")],
    "record.propose": lambda p: ["record", "propose", _text(p, "channel"), _text(p, "title"),
                                 _text(p, "text"), *_option(p, "update", "--update")],
    "record.sign": lambda p: ["record", "sign", _text(p, "channel"), _text(p, "record"),
                              *_number(p, "version")],
    "record.export": lambda p: ["record", "export", _text(p, "channel"), _text(p, "record"),
                                "--output", _absolute(p, "output")],
    "codebook.propose": _codebook_propose,
    "codebook.accept": lambda p: ["codebook", "accept", _text(p, "channel"),
                                  _text(p, "entry")],
    "codebook.send": lambda p: ["codebook", "send", _text(p, "channel"), _text(p, "entry"),
                                *_strings(p, "values")],
    "codebook.list": lambda p: ["codebook", "list", _text(p, "channel")],
    "invite": lambda p: ["invite", *_repeated(p, "relays", "--relay", least=1),
                         *_option(p, "ttl", "--ttl")],
    "accept": lambda p: ["accept", _text(p, "code"), *_option(p, "name", "--name")],
    "verify": _verify,
    "meet.suggest": lambda p: ["meet", "suggest", *_repeated(p, "between", "--between", least=2),
                               *_option(p, "after", "--after"), *_number(p, "top")],
    "meet.propose": lambda p: ["meet", "propose", _text(p, "channel"),
                               *_number(p, "round", required=True),
                               *_repeated(p, "between", "--between", least=2),
                               *_option(p, "after", "--after")],
}


def intent_argv(method: str, params: dict[str, Any]) -> list[str] | None:
    """The command line of a typed intent (with `--json`), or None if there is none.

    Raises:
        ValueError: a parameter is missing or of the wrong type.
    """
    build = INTENTS.get(method)
    if build is None:
        return None
    argv: list[str] = build(params)
    return [*argv, "--json"]
