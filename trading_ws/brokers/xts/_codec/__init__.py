"""Sans-IO codec for Symphony XTS market-data messages (the JSON product), into the shared model.

Market data arrives as Socket.IO events named ``<code>-json-full`` (the data a JSON *string*: the message
is encoded twice) or ``<code>-json-partial`` (``key:value`` pairs, ``t:<segment>_<id>`` first). The feed
calls `decode_message` with each WebSocket message; `decode_event`, `decode_full`, `decode_partial` and
`parse_partial` are its parts. What each code becomes, and every choice the protocol reference leaves
open (touchline shapes, the two time bases, depth, tradable, change, missing fields, partial messages,
1105), is written down in docs/xts.md, "The codec".

The package is split by concern:

* `_wire`: message codes, property names, the two time bases (one `TimeCache` each), the msgspec
  structures of the full messages, and what the decoders share;
* `_full`: Full-mode decoding, including the two hot paths (1501, 1502), generated from one factory;
* `_partial`: Partial-mode parsing and decoding;
* `_dispatch`: `decode_event` and `decode_message`, by event name;
* `_encode`: the encoders (events back into messages) used by the simulator, `trading_ws.testing`, tests
  and benchmarks.

Every name is importable from here, as it was from the single module this package replaces. Everything is
pure: no I/O, no clock (the caller passes the receipt time, else ``time.time()``).
"""

from ._dispatch import (
    _EVENTS as _EVENTS,
    _FRAME_ERRORS as _FRAME_ERRORS,
    _TEXT_EVENTS as _TEXT_EVENTS,
    _decode_frame as _decode_frame,
    decode_event,
    decode_message,
)
from ._encode import encode_full, encode_partial
from ._full import (
    _FULL as _FULL,
    _FULL_PARTS as _FULL_PARTS,
    _decode_flat_1501 as _decode_flat_1501,
    _decode_flat_1502 as _decode_flat_1502,
    _decode_nested_1501 as _decode_nested_1501,
    _decode_nested_1502 as _decode_nested_1502,
    decode_full,
    decode_list_quotes,
)
from ._partial import _PARTIAL as _PARTIAL, PartialLevel, PartialMessage, decode_partial, parse_partial
from ._wire import (
    _NSE_OFFSET as _NSE_OFFSET,
    _NSE_SEGMENTS as _NSE_SEGMENTS,
    _NSE_TIMES as _NSE_TIMES,
    _OTHER_OFFSET as _OTHER_OFFSET,
    _OTHER_TIMES as _OTHER_TIMES,
    _TIME_CACHE_MAX as _TIME_CACHE_MAX,
    CANDLE,
    CODE_TO_MODE,
    INDEX_DATA,
    INSTRUMENT_PROPERTY_CHANGE,
    INSTRUMENT_PROPERTY_NAMES,
    LTP,
    MARKET_DEPTH,
    MARKET_STATUS,
    MESSAGE_CODES,
    MODE_TO_CODE,
    OPEN_INTEREST,
    TOUCHLINE,
    datetime_to_xts,
    event_name,
    is_index,
    subscription_body,
    xts_to_datetime,
)

__all__ = [
    "CANDLE",
    "CODE_TO_MODE",
    "INDEX_DATA",
    "INSTRUMENT_PROPERTY_CHANGE",
    "INSTRUMENT_PROPERTY_NAMES",
    "LTP",
    "MARKET_DEPTH",
    "MARKET_STATUS",
    "MESSAGE_CODES",
    "MODE_TO_CODE",
    "OPEN_INTEREST",
    "TOUCHLINE",
    "PartialLevel",
    "PartialMessage",
    "datetime_to_xts",
    "decode_event",
    "decode_full",
    "decode_list_quotes",
    "decode_message",
    "decode_partial",
    "encode_full",
    "encode_partial",
    "event_name",
    "is_index",
    "parse_partial",
    "subscription_body",
    "xts_to_datetime",
]
