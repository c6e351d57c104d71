"""Relay storage: one interface, two backends, chosen by database URL.

- ``sqlite:///path/relay.db`` (absolute path: four slashes in all, ``sqlite:////srv/r.db``;
  three slashes and a relative path are relative to the working folder): the embedded
  default, one relay process per file.
- ``postgresql://user@host:port/dbname[?schema=name]``: several relay nodes share it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from backchannel.relay.limits import RelayLimits
from backchannel.relay.metrics import RelayMetrics
from backchannel.relay.store.base import Refused, RelayStore, StoreUnavailable, SweepResult

__all__ = [
    "DEFAULT_PG_SCHEMA",
    "Refused",
    "RelayStore",
    "StoreUnavailable",
    "SweepResult",
    "open_store",
    "redact_url",
]

# Tables live in their own schema so that a relay can share a database with other tools.
DEFAULT_PG_SCHEMA = "backchannel_relay"


def open_store(url: str, limits: RelayLimits, metrics: RelayMetrics | None = None) -> RelayStore:
    """Build (not yet open) the store a database URL names.

    Args:
        url: ``sqlite:///...`` or ``postgresql://...`` (``postgres://`` also accepted).
        limits: quotas and TTLs.
        metrics: where the store records commit latency.

    Returns:
        A store; call ``await store.open()`` (the server does).

    Raises:
        ValueError: the URL names no supported backend.
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ValueError("sqlite URL needs a file path: sqlite:///relay.db")
        from backchannel.relay.store.sqlite import SqliteStore

        return SqliteStore(Path(path), limits, metrics)
    if parts.scheme in ("postgresql", "postgres"):
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", DEFAULT_PG_SCHEMA)
        dsn = urlunsplit(parts._replace(query=urlencode(query)))
        from backchannel.relay.store.postgres import PostgresStore

        return PostgresStore(dsn, schema, limits, metrics)
    raise ValueError(f"unsupported database URL scheme {parts.scheme!r}; "
                     "use sqlite:///path or postgresql://...")


def redact_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
