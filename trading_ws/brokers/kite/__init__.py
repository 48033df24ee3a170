"""Zerodha Kite Connect v3 market data: the binary codec and the reconnecting feed.

`open_kite_feed` connects to `KITE_WS_URL` (``wss://ws.kite.trade``, the production ticker) unless given
another ``url``; `KiteBroker` configures Kite for the manager (`trading_ws.open_market_data`). The sans-IO
layer is public for recording, replaying and testing: `decode_frame` decodes one binary message as the feed
does, `decode_control` one request a client sends; the ``encode_*`` functions build them (simulators and
tests use them).
"""

from ._broker import KiteBroker as KiteBroker
from ._codec import (
    ControlMessage as ControlMessage,
    decode_control as decode_control,
    decode_frame as decode_frame,
    encode_control as encode_control,
    encode_frame as encode_frame,
    encode_text as encode_text,
    price_divisor as price_divisor,
)
from ._feed import (
    DEFAULT_BUFFER as DEFAULT_BUFFER,
    KITE_WS_URL as KITE_WS_URL,
    MAX_INSTRUMENTS_PER_CONNECTION as MAX_INSTRUMENTS_PER_CONNECTION,
    KiteFeed as KiteFeed,
    KiteFeedStatistics as KiteFeedStatistics,
    open_kite_feed as open_kite_feed,
)
from ._instruments import KiteInstrument as KiteInstrument, parse_instruments_csv as parse_instruments_csv

__all__ = [
    "DEFAULT_BUFFER",
    "KITE_WS_URL",
    "MAX_INSTRUMENTS_PER_CONNECTION",
    "ControlMessage",
    "KiteBroker",
    "KiteFeed",
    "KiteFeedStatistics",
    "KiteInstrument",
    "decode_control",
    "decode_frame",
    "encode_control",
    "encode_frame",
    "encode_text",
    "open_kite_feed",
    "parse_instruments_csv",
    "price_divisor",
]
