"""A Trio application embedding the trading_ws manager: two "users" share instruments, one of them a
slow consumer that conflates, with the embedded Kite simulator standing in for the broker.

Run it: ``python docs/examples/embed_manager.py`` (it stops by itself after a few seconds).
With real credentials, replace the simulator with ``KiteBroker(api_key, access_token)``.
"""

from __future__ import annotations

import trio

from trading_ws import (
    Gap,
    KiteBroker,
    Mode,
    Overflow,
    Reconnecting,
    Stale,
    Subscription,
    Tick,
    open_market_data,
)
from trading_ws.sim import DEMO_ACCESS_TOKEN, DEMO_API_KEY, KiteSimulator, kite_instruments_csv


async def trader(sub: Subscription, seconds: float) -> int:
    """A fast consumer: reads every tick in full mode."""
    ticks = 0
    with trio.move_on_after(seconds):
        async for event in sub:
            if isinstance(event, Tick):
                ticks += 1
            elif isinstance(event, Reconnecting):
                print(f"trader: reconnecting in {event.delay:.2f} s")
            elif isinstance(event, Gap):
                print(f"trader: no data for {event.duration:.2f} s on {', '.join(event.symbols)}")
            elif isinstance(event, Stale):
                print(f"trader: quiet for {event.after} s: {', '.join(event.symbols)}")
    return ticks


async def dashboard(sub: Subscription, seconds: float) -> None:
    """A slow consumer: wakes up twice a second and only wants the newest price of each symbol."""
    with trio.move_on_after(seconds):
        while True:
            await trio.sleep(0.5)
            latest = {e.symbol: e.last_price for e in await sub.receive_batch() if isinstance(e, Tick)}
            print("dashboard:", ", ".join(f"{s} {p:,.2f}" for s, p in sorted(latest.items())))


async def main(seconds: float = 3.0) -> int:
    simulator = KiteSimulator(tick_interval=0.05)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(simulator.serve)
        kite = KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, instruments=kite_instruments_csv())
        async with (
            open_market_data(kite, stale_after=10) as md,
            md.subscribe(["NSE:INFY", "NSE:RELIANCE"], mode=Mode.FULL, user_id="trader") as fast,
            md.subscribe(
                ["NSE:INFY", "NSE:NIFTY 50"],
                mode=Mode.LTP,
                user_id="dashboard",
                buffer=100,
                overflow=Overflow.CONFLATE,
            ) as slow,
        ):
            with trio.fail_after(5):
                await fast.wait_ready()  # every symbol has ticked (the caller owns the timeout)
            async with trio.open_nursery() as users:
                users.start_soon(dashboard, slow, seconds)
                ticks = await trader(fast, seconds)
            stats = md.statistics()
            print(f"trader got {ticks} ticks; dashboard dropped {slow.statistics().queue.dropped} stale ones")
            print(f"one connection, {stats.brokers[0].instruments} instruments upstream")
        nursery.cancel_scope.cancel()
    return ticks


if __name__ == "__main__":
    trio.run(main)
