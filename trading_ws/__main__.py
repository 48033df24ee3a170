"""``python -m trading_ws`` runs the ``trading-ws`` command."""

import sys

from .cli import main

sys.exit(main())
