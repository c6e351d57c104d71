"""The TUI's tests reuse the CLI's real relay and paired principals."""

from tests.cli.conftest import no_configuration_file, pair, relay

__all__ = ["no_configuration_file", "pair", "relay"]
