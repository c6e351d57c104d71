"""The public surface of the package root is pinned."""

import backchannel


def test_public_names_are_pinned() -> None:
    assert sorted(backchannel.__all__) == [
        "BackchannelError",
        "DecryptionFailed",
        "LocalProtocolError",
        "RemoteProtocolError",
        "__version__",
    ]


def test_errors_share_one_root() -> None:
    for error in (
        backchannel.LocalProtocolError,
        backchannel.RemoteProtocolError,
        backchannel.DecryptionFailed,
    ):
        assert issubclass(error, backchannel.BackchannelError)
    assert str(backchannel.DecryptionFailed()) == "message could not be decrypted"
