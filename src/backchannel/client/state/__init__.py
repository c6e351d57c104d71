"""Typed repositories over the keystore: each owns its records' SQL, the sealing and the
bytes/hex boundary of their ids; `ClientState` bundles them with the clock, the random
source and the session cache for the parts of a principal's client (`shared`)."""
