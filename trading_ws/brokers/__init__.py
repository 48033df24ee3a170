"""Broker protocols: one subpackage per broker (`trading_ws.brokers.kite`, ...)."""
