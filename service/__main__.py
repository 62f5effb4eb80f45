"""``python -m service``: run the api pod."""

from __future__ import annotations

import uvloop
from aiohttp import web

from queuefront.settings import Settings
from queuefront.telemetry import configure_logging
from service.app import init_app
from service.context import ROUTES


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = init_app(settings)
    # let requests in flight get their replies (or their 504) before the pod goes
    longest_window_s = max((r.timeout_s for r in app[ROUTES].routes), default=1.0)
    web.run_app(
        app,
        host="0.0.0.0",
        port=settings.http_port,
        print=None,
        access_log=None,
        shutdown_timeout=longest_window_s + 1,
        handle_signals=True,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
