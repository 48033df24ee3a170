"""trading_ws: Trio-native real-time market data from Indian brokers through one typed API.

This package, the brokers (``trading_ws.brokers.kite``, ``trading_ws.brokers.xts``) and
``trading_ws.testing``'s in-memory ``FakeBroker`` are the core install (``pip install trading-ws``). The
simulators (``trading_ws.sim``) need the ``[sim]`` extra, and the live table of the ``trading-ws demo``
command the ``[cli]`` extra; ``[all]`` installs both (README.md, "Install").
"""

from ._backoff import Backoff as Backoff
from ._errors import (
    AuthenticationError as AuthenticationError,
    ConfigurationError as ConfigurationError,
    ConnectError as ConnectError,
    ConnectTimeout as ConnectTimeout,
    DecodeError as DecodeError,
    FeedClosedError as FeedClosedError,
    RateLimitedError as RateLimitedError,
    SubscriptionError as SubscriptionError,
    SubscriptionLimitError as SubscriptionLimitError,
    TLSError as TLSError,
    TradingWsError as TradingWsError,
)
from ._fanout import (
    Overflow as Overflow,
    QueueStatistics as QueueStatistics,
    SlowConsumerError as SlowConsumerError,
)
from ._manager import (
    BrokerStatistics as BrokerStatistics,
    ConnectionStatistics as ConnectionStatistics,
    MarketData as MarketData,
    MarketDataStatistics as MarketDataStatistics,
    OrderUpdates as OrderUpdates,
    Subscription as Subscription,
    SubscriptionStatistics as SubscriptionStatistics,
    UnknownSymbolError as UnknownSymbolError,
    open_market_data as open_market_data,
)
from ._model import (
    IST as IST,
    Broker as Broker,
    BrokerError as BrokerError,
    BrokerMessage as BrokerMessage,
    Candle as Candle,
    Connected as Connected,
    Depth as Depth,
    DepthLevel as DepthLevel,
    Disconnected as Disconnected,
    Event as Event,
    Gap as Gap,
    InstrumentPropertyChange as InstrumentPropertyChange,
    MarketStatus as MarketStatus,
    Mode as Mode,
    Ohlc as Ohlc,
    OpenInterest as OpenInterest,
    OrderUpdate as OrderUpdate,
    Reconnecting as Reconnecting,
    Resubscribed as Resubscribed,
    Stale as Stale,
    StatusEvent as StatusEvent,
    Tick as Tick,
)
from ._ratelimit import RateLimit as RateLimit
from ._version import __version__ as __version__
from .brokers.kite import KiteBroker as KiteBroker
from .brokers.xts import XtsBroker as XtsBroker

__all__ = [
    "IST",
    "AuthenticationError",
    "Backoff",
    "Broker",
    "BrokerError",
    "BrokerMessage",
    "BrokerStatistics",
    "Candle",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeout",
    "Connected",
    "ConnectionStatistics",
    "DecodeError",
    "Depth",
    "DepthLevel",
    "Disconnected",
    "Event",
    "FeedClosedError",
    "Gap",
    "InstrumentPropertyChange",
    "KiteBroker",
    "MarketData",
    "MarketDataStatistics",
    "MarketStatus",
    "Mode",
    "Ohlc",
    "OpenInterest",
    "OrderUpdate",
    "OrderUpdates",
    "Overflow",
    "QueueStatistics",
    "RateLimit",
    "RateLimitedError",
    "Reconnecting",
    "Resubscribed",
    "SlowConsumerError",
    "Stale",
    "StatusEvent",
    "Subscription",
    "SubscriptionError",
    "SubscriptionLimitError",
    "SubscriptionStatistics",
    "TLSError",
    "Tick",
    "TradingWsError",
    "UnknownSymbolError",
    "XtsBroker",
    "open_market_data",
]
