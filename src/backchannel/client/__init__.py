"""The Backchannel client (design §5)."""
