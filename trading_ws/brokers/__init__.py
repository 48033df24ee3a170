"""Broker protocols: one subpackage per broker, `trading_ws.brokers.kite` and `trading_ws.brokers.xts`.

This package itself exports nothing; each subpackage holds one broker's feed, its sans-IO codec and its
configuration for the manager (`KiteBroker`, `XtsBroker`, also importable from `trading_ws`).
"""

__all__: list[str] = []
