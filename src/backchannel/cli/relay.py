"""`backchannel relay ...`: run a neutral relay."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import ssl
from pathlib import Path

import typer

relay_app = typer.Typer(help="Run a neutral, blind relay.", no_args_is_help=True)

DEFAULT_PORT = 8470
# Metrics are for the operator (counters over time are timing metadata about the relay's
# users), so their listener is on loopback unless the operator says otherwise.
DEFAULT_METRICS_LISTEN = "127.0.0.1:9470"


def default_key_file(db_url: str) -> Path:
    """Where the relay keeps its forwarding key by default: beside an SQLite database
    (``relay.db`` -> ``relay.key``), else ``relay.key`` in the user's data folder (nodes
    sharing one PostgreSQL database must be given the same ``--key-file``)."""
    from urllib.parse import urlsplit

    parts = urlsplit(db_url)
    if parts.scheme == "sqlite" and parts.path.startswith("/") and len(parts.path) > 1:
        return Path(parts.path[1:]).with_suffix(".key")
    import platformdirs

    return Path(platformdirs.user_data_path("backchannel")) / "relay.key"


def default_db_url() -> str:
    """``sqlite:///<user data folder>/relay.db``."""
    import platformdirs

    path = Path(platformdirs.user_data_path("backchannel")) / "relay.db"
    return f"sqlite:///{path}"


@relay_app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(DEFAULT_PORT, help="Port to listen on."),
    db: str = typer.Option(
        "", help="Database URL: sqlite:///path/relay.db or postgresql://user@host/db"
        "[?schema=name]. Default: relay.db in your data folder."),
    ttl_days: float = typer.Option(30.0, help="Days an unacknowledged envelope is kept."),
    max_envelopes: int = typer.Option(1000, help="Envelopes one mailbox may hold."),
    max_mailbox_mib: int = typer.Option(64, help="MiB one mailbox may hold."),
    max_store_gib: float = typer.Option(
        4.0, help="GiB of envelopes the whole relay may hold (then sends are refused)."),
    max_connections_per_address: int = typer.Option(
        64, help="Open connections per client address."),
    max_connections: int = typer.Option(
        4096, help="Open TCP connections, relay-wide, handshakes included."),
    creates_per_second: float = typer.Option(
        100.0, help="Mailboxes created per second, relay-wide."),
    metrics_listen: str = typer.Option(
        DEFAULT_METRICS_LISTEN, "--metrics-listen", metavar="HOST:PORT",
        help="Serve GET /metrics (and /healthz) here, never on the public port."),
    no_metrics: bool = typer.Option(False, "--no-metrics", help="Serve no metrics at all."),
    log_addresses: bool = typer.Option(False, help="Log client addresses (off: none are logged)."),
    tls_cert: Path | None = typer.Option(  # noqa: B008 - Typer declares options this way
        None, "--tls-cert", metavar="FILE",
        help="Serve wss:// with this certificate chain (PEM); needs --tls-key."),
    tls_key: Path | None = typer.Option(  # noqa: B008
        None, "--tls-key", metavar="FILE", help="The certificate's private key (PEM)."),
    trusted_proxy: list[str] = typer.Option(  # noqa: B008 - Typer declares options this way
        [], "--trusted-proxy", metavar="ADDRESS",
        help="A reverse proxy (e.g. the TLS terminator) whose X-Forwarded-For names the "
        "client for per-address limits; repeatable."),
    key_file: Path | None = typer.Option(  # noqa: B008 - Typer declares options this way
        None, "--key-file", metavar="FILE",
        help="The relay's forwarding key, made on first start (mode 0600). "
        "Default: beside an SQLite --db (relay.db: relay.key), else relay.key in your "
        "data folder."),
    no_forwarding: bool = typer.Option(
        False, "--no-forwarding",
        help="Carry no FORWARD to other relays (sends sealed to this relay are still taken)."),
    forward_to_local: bool = typer.Option(
        False, "--forward-to-local",
        help="Also forward to relays on this machine or a private network (for trying "
        "relays side by side; off, clients cannot make the relay probe local services)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at debug level."),
) -> None:
    """Serve the relay until SIGINT or SIGTERM; stopping loses no stored envelope.

    Example: backchannel relay serve --host 0.0.0.0 --port 8470 --db postgresql://relay@db/relay
    """
    from backchannel.relay.limits import DAY, RelayLimits
    from backchannel.relay.logs import configure_logging

    configure_logging(logging.DEBUG if verbose else logging.INFO)
    try:
        limits = RelayLimits(
            envelope_ttl=ttl_days * DAY,
            mailbox_max_envelopes=max_envelopes,
            mailbox_max_bytes=max_mailbox_mib * 1024 * 1024,
            store_max_bytes=int(max_store_gib * 1024 * 1024 * 1024),
            max_connections_per_address=max_connections_per_address,
            max_connections=max_connections,
            creates_per_second=creates_per_second,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    metrics = None if no_metrics else _host_port(metrics_listen)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    proxies = set()
    for address in trusted_proxy:
        try:
            proxies.add(str(ipaddress.ip_address(address)))
        except ValueError:
            raise typer.BadParameter(f"not an IP address: {address}",
                                     param_hint="--trusted-proxy") from None
    tls = _tls_context(tls_cert, tls_key)
    _raise_open_files(max_connections)
    # The default metrics address is a convenience: a second relay on the machine finds it
    # taken and serves without metrics (saying so); an address asked for must be served.
    optional = metrics_listen == DEFAULT_METRICS_LISTEN
    db_url = db or default_db_url()
    code = runner(_serve(host, port, db_url, limits, log_addresses,
                         frozenset(proxies), tls, metrics, optional, key_file, not no_forwarding,
                         forward_to_local))
    raise typer.Exit(code)


@relay_app.command("key")
def key(
    action: str = typer.Argument(
        "show", metavar="[show|rotate]",
        help="show (the default): print the keys; rotate: make a fresh current key, the "
        "old one opening sealed sends for --overlap-days more."),
    db: str = typer.Option(
        "", help="The relay's database URL, to find its key file as `serve` does. "
        "Default: relay.db in your data folder."),
    key_file: Path | None = typer.Option(  # noqa: B008 - Typer declares options this way
        None, "--key-file", metavar="FILE", help="The key file itself (as given to `serve`)."),
    overlap_days: float = typer.Option(
        7.0, "--overlap-days", min=0.0,
        help="rotate: days the previous key still opens sealed sends (then KEY_RETIRED)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show the relay's forwarding keys (id and fingerprint), or rotate them.

    The operator publishes or reads out the fingerprint so that users can compare it with
    the one their client fetched from GET /relay-key. `show` creates and changes nothing;
    `rotate` replaces the key file (a running relay reads it on SIGHUP).

    Example: backchannel relay key rotate --db sqlite:///var/lib/backchannel/relay.db
    """
    import json
    import time

    from backchannel.protocol.text import escaped
    from backchannel.relay.relaykey import DAY_SECONDS, BadKeyFile, read_key, rotate_key

    if action not in ("show", "rotate"):
        raise typer.BadParameter(f"not show or rotate: {escaped(action)}",
                                 param_hint="ACTION")
    path = key_file if key_file is not None else default_key_file(db or default_db_url())
    shown = escaped(str(path))
    now = time.time()
    try:
        if action == "rotate":
            ring = rotate_key(path, now, overlap_days * DAY_SECONDS)
        else:
            ring = read_key(path)
    except FileNotFoundError:
        typer.echo(f"error: no relay key at {shown} (`relay serve` makes it on first start)",
                   err=True)
        raise typer.Exit(1) from None
    except (BadKeyFile, OSError) as exc:
        why = str(exc) if isinstance(exc, BadKeyFile) else (exc.strerror or type(exc).__name__)
        typer.echo(f"error: cannot read the relay key at {shown}: {escaped(why)}", err=True)
        raise typer.Exit(1) from None
    public = ring.public
    previous = ring.previous.public if ring.previous is not None else None
    open_until = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ring.previous_until))
                  if previous is not None else "")
    in_overlap = previous is not None and now <= ring.previous_until
    if as_json:
        typer.echo(json.dumps({
            "key_file": str(path), "key_id": public.key_id.hex(),
            "fingerprint": public.fingerprint,
            "identity": ring.identity.public.hex(),
            "identity_fingerprint": ring.identity.fingerprint,
            "previous": None if previous is None else {
                "key_id": previous.key_id.hex(), "fingerprint": previous.fingerprint,
                "opens_until": int(ring.previous_until), "open": in_overlap},
            "retired": [k.hex() for k in ring.retired],
            "rotated": action == "rotate"}))
        return
    typer.echo(f"key file     {shown}")
    typer.echo(f"key id       {public.key_id.hex()}")
    typer.echo(f"fingerprint  {public.fingerprint}")
    # What invites pin (the key statement's signer): it stays the same across rotations.
    typer.echo(f"identity     {ring.identity.fingerprint}")
    if previous is not None:
        state = "opens sealed sends until" if in_overlap else "retired since"
        typer.echo(f"previous     {previous.key_id.hex()} ({state} {open_until})")
    if ring.retired:
        typer.echo(f"retired      {len(ring.retired)} older key(s)")
    if action == "rotate":
        typer.echo("rotated: a running relay takes the new key on SIGHUP "
                   "(kill -HUP its process) or at its next start")


def _listen_failure(
    error: OSError, public: tuple[str, int], metrics: tuple[str, int] | None
) -> tuple[str, str]:
    """("HOST:PORT", why) for a listener that could not be bound.

    The OS error text is not logged as it is (the relay logs no error text, libsignal's
    rule); its errno is told in words, with the address it concerns. (Imports here: only
    a failed start needs them.)
    """
    import errno
    import os
    import re

    # asyncio (and uvloop) word a bind failure "error while attempting to bind on address
    # ('127.0.0.1', 8470): address already in use": the address is taken from there.
    found = re.search(r"address \('([^']*)', (\d+)", str(error))
    host, port = (found.group(1), int(found.group(2))) if found else public
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    which = " (--metrics-listen)" if metrics is not None and (host, port) == metrics else ""
    advice = {  # the usual reasons, in the operator's terms
        errno.EADDRINUSE: "is in use (another relay or program listens there: stop it, or"
        " choose another port)",
        errno.EACCES: "is not allowed to this user (ports below 1024 need privileges)",
        errno.EADDRNOTAVAIL: "is not an address of this machine",
    }.get(error.errno or 0)
    if advice is None:
        advice = f"cannot be listened on: {os.strerror(error.errno or 0).lower()}"
    return where, f"{where}{which} {advice}"


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as a (host, port) pair."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise typer.BadParameter(f"not HOST:PORT: {text}", param_hint="--metrics-listen")
    return host, int(port)


def _raise_open_files(max_connections: int) -> None:
    """Lift the soft limit on open files towards what the connection cap needs.

    The usual soft limit is 1,024, under the default cap of 4,096 connections; past it
    accept() fails and the relay would refuse sockets it means to take. The hard limit is
    the ceiling an unprivileged process may go to.
    """
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Room beside the connections for the database, the listeners and the logs.
    wanted = max_connections + 64
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A server TLS context (TLS 1.2 at least), or None when no certificate is given."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise typer.BadParameter("--tls-cert and --tls-key go together", param_hint="--tls-key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise typer.BadParameter(f"cannot load the certificate: {error}",
                                 param_hint="--tls-cert") from None
    return context


async def _serve(host: str, port: int, url: str, limits: object, log_addresses: bool,
                 trusted_proxies: frozenset[str] = frozenset(),
                 tls: ssl.SSLContext | None = None,
                 metrics_listen: tuple[str, int] | None = None,
                 metrics_optional: bool = False, key_file: Path | None = None,
                 forwarding: bool = True, forward_to_local: bool = False) -> int:
    from backchannel.protocol.errors import BackchannelError
    from backchannel.relay.limits import RelayLimits
    from backchannel.relay.relaykey import load_or_create_key, read_key
    from backchannel.relay.server import RelayServer
    from backchannel.relay.store import StoreUnavailable, open_store, redact_url

    assert isinstance(limits, RelayLimits)
    log = logging.getLogger("backchannel.relay")
    try:
        store = open_store(url, limits)
    except ValueError as exc:
        log.error("bad database URL", extra={"fields": {"reason": str(exc)}})
        return 2
    key_path = key_file if key_file is not None else default_key_file(url)
    try:
        key = load_or_create_key(key_path)
    except (OSError, BackchannelError) as exc:
        log.error("cannot start", extra={"fields": {
            "key_file": str(key_path), "reason": type(exc).__name__}})
        return 1
    server = RelayServer(store, limits, host=host, port=port, log_addresses=log_addresses,
                         trusted_proxies=trusted_proxies, tls=tls,
                         metrics_listen=metrics_listen, metrics_optional=metrics_optional,
                         forward_key=key, forwarding=forwarding,
                         forward_to_local=forward_to_local)
    # Signals are handled before the "listening" line is logged: whoever waits for that
    # line may stop the relay at once.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def reload_key() -> None:
        """SIGHUP: read the key file again (after `relay key rotate`)."""
        try:
            # Read, never made: a key file gone missing must not become a fresh key.
            server.forward_key = read_key(key_path)
        except (OSError, BackchannelError) as exc:
            log.error("key not reloaded", extra={"fields": {
                "key_file": str(key_path), "reason": type(exc).__name__}})
            return
        log.info("key reloaded", extra={"fields": {
            "key_id": server.forward_key.public.key_id.hex(),
            "key_fingerprint": server.forward_key.public.fingerprint}})

    loop.add_signal_handler(signal.SIGHUP, reload_key)
    try:
        await server.start()
    except StoreUnavailable as exc:
        log.error("cannot start", extra={"fields": {"db": redact_url(url),
                                                     "reason": type(exc).__name__}})
        return 1
    except OSError as exc:
        # Binding failed (the store opened): name the address, not the database.
        where, reason = _listen_failure(exc, (host, port), metrics_listen)
        log.error("cannot start", extra={"fields": {"listen": where, "reason": reason}})
        return 1
    # A signal stops the relay; so does the store's writer dying (the server has logged
    # it), and then the exit status says so, for a supervisor to restart the relay.
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(server.fatal.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
    await server.stop()
    return 1 if server.fatal.is_set() else 0
