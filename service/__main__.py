"""``python -m service``: run the api pod."""

from __future__ import annotations

import uvloop
from aiohttp import web

from queuefront.settings import Settings
from queuefront.telemetry import configure_logging
from service.app import init_app


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    # shutdown_timeout: let requests in flight get their replies before the pod goes
    web.run_app(
        init_app(settings),
        host="0.0.0.0",
        port=settings.http_port,
        print=None,
        access_log=None,
        shutdown_timeout=settings.default_timeout_s,
        handle_signals=True,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
