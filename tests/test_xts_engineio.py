"""Engine.IO v3 / Socket.IO rev 4 packet layer of the XTS feed (trading_ws.brokers.xts._engineio)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from trading_ws import DecodeError
from trading_ws.brokers.xts import (
    EioClose,
    EioNoop,
    EioPacketType,
    EioPing,
    EioPong,
    EioUpgrade,
    OpenPacket,
    SioConnect,
    SioDisconnect,
    SioError,
    SioEvent,
    Unknown,
    encode_close,
    encode_connect,
    encode_disconnect,
    encode_error,
    encode_event,
    encode_noop,
    encode_ping,
    encode_pong,
    parse_packet,
)

# Appendix A of the protocol reference, server and client lines, verbatim.
OPEN_LINE = '0{"sid":"AbCdEfGhIjKlMnOpQrSt","upgrades":[],"pingInterval":25000,"pingTimeout":60000}'
JOINED_LINE = (
    '42["joined",{"type":"success","code":"s-socket-0001",'
    '"description":"Socket joined successfully! SocketId=AbCdEfGhIjKlMnOpQrSt"}]'
)
PARTIAL_LINE = '42["1501-json-partial","t:1_2885,ltp:1272.2,ltq:5,v:123456"]'


def test_packet_type_values() -> None:
    assert [t.value for t in EioPacketType] == [0, 1, 2, 3, 4, 5, 6]
    assert int(EioPacketType.MESSAGE) == 4
    assert EioPacketType(6) is EioPacketType.NOOP


def test_appendix_a_open() -> None:
    packet = parse_packet(OPEN_LINE)
    assert packet == OpenPacket("AbCdEfGhIjKlMnOpQrSt", (), 25.0, 60.0)
    assert isinstance(packet, OpenPacket)
    assert packet.encode() == OPEN_LINE


def test_appendix_a_connect_joined_and_partial() -> None:
    assert parse_packet("40") == SioConnect("/")
    joined = parse_packet(JOINED_LINE)
    assert isinstance(joined, SioEvent)
    assert joined.name == "joined"
    assert joined.args == (
        {
            "type": "success",
            "code": "s-socket-0001",
            "description": "Socket joined successfully! SocketId=AbCdEfGhIjKlMnOpQrSt",
        },
    )
    assert joined.namespace == "/"
    assert joined.ack_id is None
    partial = parse_packet(PARTIAL_LINE)
    assert partial == SioEvent("1501-json-partial", ("t:1_2885,ltp:1272.2,ltq:5,v:123456",))


def test_appendix_a_full_event_line_verbatim() -> None:
    # The reference abbreviates the message with "...": the data is still one JSON string argument.
    packet = parse_packet('42["1501-json-full","{\\"MessageCode\\":1501,...}"]')
    assert packet == SioEvent("1501-json-full", ('{"MessageCode":1501,...}',))


def test_appendix_a_full_event_data_is_a_json_string() -> None:
    inner = json.dumps({"MessageCode": 1501, "ExchangeSegment": 1, "ExchangeInstrumentID": 2885})
    line = "42" + json.dumps(["1501-json-full", inner])
    packet = parse_packet(line)
    assert isinstance(packet, SioEvent)
    assert packet.name == "1501-json-full"
    assert packet.args == (inner,)
    assert isinstance(packet.args[0], str)


def test_appendix_a_heartbeat_and_close() -> None:
    assert encode_ping() == "2"
    assert parse_packet("2") == EioPing("")
    assert encode_pong() == "3"
    assert parse_packet("3") == EioPong("")
    assert encode_disconnect() == "41"
    assert parse_packet("41") == SioDisconnect("/")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", EioClose()),
        ("2probe", EioPing("probe")),
        ("3probe", EioPong("probe")),
        ("5", EioUpgrade()),
        ("6", EioNoop()),
        ("40/chat,", SioConnect("/chat")),
        ("40/chat", SioConnect("/chat")),
        ("41/chat,", SioDisconnect("/chat")),
        ('44"Not authorized"', SioError("Not authorized")),
        ('44{"message":"bad token"}', SioError({"message": "bad token"})),
        ("44", SioError(None)),
        ("44not json", SioError("not json")),
        ('44/ns,{"message":"x"}', SioError({"message": "x"}, "/ns")),
    ],
)
def test_control_and_socketio_packets(text: str, expected: object) -> None:
    assert parse_packet(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "7", "x", "9abc", "4", "43[1]", "431[1]", '451-["a",{"_placeholder":true,"num":0}]', "46", "4x"],
)
def test_unknown_packets_are_returned_not_raised(text: str) -> None:
    assert parse_packet(text) == Unknown(text)


def test_binary_message_is_unknown() -> None:
    assert parse_packet(b"\x04\x00\x01") == Unknown(b"\x04\x00\x01")


def test_namespaced_and_ack_events() -> None:
    assert parse_packet('42/md,["1501-json-full","{}"]') == SioEvent("1501-json-full", ("{}",), "/md")
    assert parse_packet('4212["ev",1,2]') == SioEvent("ev", (1, 2), "/", 12)
    assert parse_packet('42/md,7["ev"]') == SioEvent("ev", (), "/md", 7)
    assert parse_packet('42[ "spaced" , 1]') == SioEvent("spaced", (1,))


@pytest.mark.parametrize(
    "text",
    [
        '42["1501-json-full",',  # truncated JSON (fast path)
        '42["a"]x',  # trailing garbage
        "42{}",  # not a list
        '42"name"',
        "42[]",  # no name
        "42[1,2]",  # name not a string
        "42",  # no data at all
        "42/ns,[null]",
        '427["ev"',  # ack id then bad JSON
    ],
)
def test_malformed_events_raise_decode_error(text: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_packet(text)
    assert info.value.raw == text
    assert "Socket.IO event" in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "0{",
        '0{"sid":"x"}',  # no ping fields
        '0{"sid":"x","pingInterval":25000}',
        '0{"pingInterval":25000,"pingTimeout":5000}',  # no sid
        '0{"sid":1,"pingInterval":25000,"pingTimeout":5000}',
        '0{"sid":"x","pingInterval":"soon","pingTimeout":5000}',
        '0["sid"]',
    ],
)
def test_malformed_open_raises_decode_error(text: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_packet(text)
    assert info.value.raw == text
    assert "open packet" in str(info.value)


def test_open_packet_tolerates_order_and_missing_upgrades() -> None:
    packet = parse_packet('0{"pingTimeout":20000,"pingInterval":25000.0,"sid":"s","extra":1}')
    assert packet == OpenPacket("s", (), 25.0, 20.0)
    packet = parse_packet('0{"sid":"s","upgrades":["websocket"],"pingInterval":1500,"pingTimeout":250}')
    assert packet == OpenPacket("s", ("websocket",), 1.5, 0.25)


def test_open_packet_encode_rounds_to_milliseconds() -> None:
    assert OpenPacket("sid", ("websocket",), 25, 0.0015).encode() == (
        '0{"sid":"sid","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":2}'
    )


def test_encoders() -> None:
    assert encode_event("1501-json-full", '{"a":1}') == '42["1501-json-full","{\\"a\\":1}"]'
    assert encode_event("joined", {"type": "success"}, 3) == '42["joined",{"type":"success"},3]'
    assert encode_event("x") == '42["x"]'
    assert encode_connect() == "40"
    assert encode_close() == "1"
    assert encode_noop() == "6"
    assert encode_error() == "44"
    assert encode_error({"message": "no"}) == '44{"message":"no"}'
    assert SioEvent("ev", (1,), "/ns", 5).encode() == '42/ns,5["ev",1]'
    assert SioConnect("/ns").encode() == "40/ns,"
    assert SioDisconnect().encode() == "41"
    assert EioPing("probe").encode() == "2probe"
    assert EioPong().encode() == "3"
    assert EioClose().encode() == "1"
    assert EioUpgrade().encode() == "5"
    assert EioNoop().encode() == "6"


def test_parsed_events_are_frozen_values() -> None:
    packet = parse_packet('42["a",1]')
    assert isinstance(packet, SioEvent)
    assert packet == SioEvent("a", (1,))
    assert hash(packet) == hash(SioEvent("a", (1,)))
    with pytest.raises(AttributeError):
        packet.name = "b"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------
# Property tests.

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)
namespaces = st.just("/") | st.text(st.characters(blacklist_characters=",", codec="utf-8"), max_size=8).map(
    lambda s: "/" + s
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(),
    args=st.lists(json_values, max_size=4),
    namespace=namespaces,
    ack_id=st.none() | st.integers(0, 10**9),
)
def test_event_round_trip(name: str, args: list[Any], namespace: str, ack_id: int | None) -> None:
    event = SioEvent(name, tuple(args), namespace, ack_id)
    assert parse_packet(event.encode()) == event
    if namespace == "/" and ack_id is None:
        assert parse_packet(encode_event(name, *args)) == event


@settings(max_examples=200, deadline=None)
@given(
    sid=st.text(),
    upgrades=st.lists(st.text(), max_size=3),
    interval_ms=st.integers(0, 10**7),
    timeout_ms=st.integers(0, 10**7),
)
def test_open_round_trip(sid: str, upgrades: list[str], interval_ms: int, timeout_ms: int) -> None:
    packet = OpenPacket(sid, tuple(upgrades), interval_ms / 1000, timeout_ms / 1000)
    assert parse_packet(packet.encode()) == packet


@settings(max_examples=200, deadline=None)
@given(data=json_values, namespace=namespaces)
def test_error_round_trip(data: Any, namespace: str) -> None:
    packet = SioError(data, namespace)
    assert parse_packet(packet.encode()) == packet


@settings(max_examples=1000, deadline=None)
@given(
    text=st.text()
    | st.builds(
        lambda prefix, rest: prefix + rest,
        st.sampled_from(["0", "2", "3", "4", "40", "42", "44", '42["']),
        st.text(),
    )
    | st.builds(
        lambda prefix, value: prefix + json.dumps(value),
        st.sampled_from(["0", "42", "44", "42/x,", "421"]),
        json_values,
    )
)
def test_arbitrary_text_never_raises_anything_but_decode_error(text: str) -> None:
    error: DecodeError | None = None
    try:
        packet = parse_packet(text)
    except DecodeError as exc:
        error = exc
    if error is None:
        assert packet is not None
    else:
        assert error.raw == text
        assert text[:1] in ("0", "4")


@settings(max_examples=200, deadline=None)
@given(data=st.binary())
def test_arbitrary_bytes_are_unknown(data: bytes) -> None:
    assert parse_packet(data) == Unknown(data)
