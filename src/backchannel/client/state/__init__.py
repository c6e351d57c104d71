"""Typed repositories over the keystore: each owns its records' SQL and sealing."""
