"""The emulator as one ASGI application: provider API, evidence downloads, control API."""

from __future__ import annotations

import logging

from worker.emulator import api, control, evidence
from worker.emulator.asgi import Receive, Scope, Send, send_json
from worker.emulator.config import EmulatorConfig
from worker.emulator.state import EmulatorState

log = logging.getLogger(__name__)


class EmulatorApp:
    """ASGI 3 application; all state lives in ``self.state`` (one process, one event loop)."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.state = EmulatorState(config or EmulatorConfig())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith(control.PREFIX):
                await control.handle_control(self.state, scope, receive, send)
            elif path.startswith(evidence.PREFIX) and scope["method"] in ("GET", "HEAD"):
                await evidence.handle_evidence(self.state, scope, receive, send)
            elif path == "/" and scope["method"] in ("POST", "GET"):
                await api.handle_api(self.state, scope, receive, send)
            else:
                await send_json(send, 404, {"error": "not found"})
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.state.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.state.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
