"""Zerodha Kite Connect v3 market data: the binary codec and the reconnecting feed."""

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
    KITE_WS_URL as KITE_WS_URL,
    MAX_INSTRUMENTS_PER_CONNECTION as MAX_INSTRUMENTS_PER_CONNECTION,
    KiteFeed as KiteFeed,
    KiteFeedStatistics as KiteFeedStatistics,
    open_kite_feed as open_kite_feed,
)
from ._instruments import KiteInstrument as KiteInstrument, parse_instruments_csv as parse_instruments_csv

__all__ = [
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
