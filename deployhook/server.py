"""Run the daemon: build the hook and the app, listen, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from .app import make_app
from .hook import DeployHook
from .settings import Config

log = logging.getLogger("deployhook")


async def serve(config: Config) -> None:
    """Serve until SIGTERM or SIGINT (or an ``exit`` reload), then finish the running deploy.

    Raises:
        ConfigError: the checkout cannot be resolved (see :meth:`DeployHook.start`).
        OSError: the address cannot be bound.
    """
    stop = asyncio.Event()
    hook = DeployHook(config, on_exit=stop.set)
    await hook.start()
    server = make_app(hook).listen(
        config.port, config.address, max_body_size=config.max_body_size * 4,
        idle_connection_timeout=60, body_timeout=60,
    )
    port = next(iter(server._sockets.values())).getsockname()[1]
    log.info("listening on http://%s:%d%s", config.address, port, config.webhook_path)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: no new deliveries; waiting for a running deploy")
    server.stop()
    await hook.worker.idle()
    await server.close_all_connections()
    hook.close()
    log.info("stopped")
