"""The agent: one long-running owner per principal, its lock and its local API."""
