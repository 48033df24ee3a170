"""The parts of the ``trading-ws`` command (its entry point is `trading_ws.cli.main`).

``_common``: exit codes, output, errors and the extras each command needs; ``_demo``: the demo's board,
its rendering and its feeds; ``_sim``: the ``sim`` commands. The simulators and ``rich`` are imported
inside the commands that run them, so that a core install (no extras) can import all of this.
"""
