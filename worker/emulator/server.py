"""Run the emulator with uvicorn (httptools + uvloop) in this process."""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from worker.emulator.app import EmulatorApp
from worker.emulator.config import EmulatorConfig


class _Server(uvicorn.Server):
    """Prints one line with the URL once the socket listens."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            print(
                f"idv-worker emulator listening on http://{self.config.host}:{self.config.port}",
                flush=True,
            )


def build_server(config: EmulatorConfig, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for the emulator app (plain ASGI, httptools parser, no access log)."""
    return _Server(
        uvicorn.Config(
            EmulatorApp(config),
            host=config.host,
            port=config.port,
            loop="none",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level=log_level,
            timeout_keep_alive=30,
        )
    )


def run(config: EmulatorConfig, log_level: str = "warning") -> int:
    """Blocking entry point (uvloop when available); exit status 1 if it could not start."""
    server = build_server(config, log_level)
    try:
        import uvloop
    except ImportError:
        asyncio.run(server.serve())
    else:
        uvloop.run(server.serve())
    return 0 if server.started else 1
