"""Zerodha Kite Connect v3 market data: the binary codec and the reconnecting feed."""

from ._codec import (
    ControlMessage as ControlMessage,
    decode_control as decode_control,
    decode_frame as decode_frame,
    encode_control as encode_control,
    encode_frame as encode_frame,
    encode_text as encode_text,
    price_divisor as price_divisor,
)

__all__ = [
    "ControlMessage",
    "decode_control",
    "decode_frame",
    "encode_control",
    "encode_frame",
    "encode_text",
    "price_divisor",
]
