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


def test_client_api_names_are_pinned() -> None:
    from backchannel.client import api

    assert sorted(api.__all__) == sorted(
        [
            "DEFAULT_INVITE_TTL_MS",
            "ChannelNotFound",
            "ChannelRecord",
            "ChannelStatus",
            "ClientError",
            "HistoryEntry",
            "HistoryFork",
            "HistoryGap",
            "HistoryPage",
            "IdentityChanged",
            "InboxEntry",
            "InviteRefused",
            "KdfParameters",
            "NotInitialised",
            "Principal",
            "SendResult",
            "StateCorrupted",
            "SyncReport",
            "WrongPassphrase",
            "escaped",
        ]
    )
    for name in api.__all__:
        assert getattr(api, name) is not None


def test_testing_helpers_are_public_and_deterministic() -> None:
    from backchannel import testing

    assert sorted(testing.__all__) == ["FixedClock", "MemoryRelayStore", "SeededRng"]
    first, second = testing.SeededRng("seed"), testing.SeededRng("seed")
    assert [first(8) for _ in range(3)] == [second(8) for _ in range(3)]
    assert testing.SeededRng("seed")(8) != testing.SeededRng("other")(8)
    clock = testing.FixedClock(5)
    clock.advance(10)
    assert clock() == 15
