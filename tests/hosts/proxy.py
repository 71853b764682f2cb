"""A userspace TCP forwarder that adds delay, jitter and loss (the kernel here has no ``netem``).

It runs on the router host and listens on one address per service; the other hosts reach each
service through it, so every byte between hosts crosses a link with the link's properties:

* ``delay_ms`` ± ``jitter_ms`` (uniform) per direction, applied to every chunk read, in order
  (a chunk never overtakes the one before it, as on one TCP stream);
* ``loss``: the share of chunks that are "lost" once: TCP retransmits a lost segment after its
  retransmission timeout, so to the applications a loss is a chunk held ``rto_ms`` (200 ms,
  Linux's minimum RTO) longer, which is what this does.

Links are changed while it runs through a line protocol on ``--control``:
``set NAME delay_ms=50 jitter_ms=0 loss=0`` answers ``ok``; ``get NAME`` answers the settings as
JSON. Usage (one ``--link`` per service)::

    python -m tests.hosts.proxy --control 10.77.0.1:7000 \
        --link redis=10.77.0.101:6390,10.77.0.10:6390 --link s3=...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from dataclasses import asdict, dataclass, field


@dataclass
class Link:
    """One service behind the proxy and what its link does to the bytes."""

    name: str
    listen: tuple[str, int]
    target: tuple[str, int]
    delay_ms: float = 10.0
    jitter_ms: float = 5.0
    loss: float = 0.0
    rto_ms: float = 200.0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def due_in(self) -> float:
        """Seconds the next chunk is held."""
        held = self.delay_ms + self.rng.uniform(-self.jitter_ms, self.jitter_ms)
        if self.loss and self.rng.random() < self.loss:
            held += self.rto_ms
        return max(0.0, held) / 1000

    def settings(self) -> dict[str, float]:
        keys = ("delay_ms", "jitter_ms", "loss", "rto_ms")
        return {k: v for k, v in asdict(self).items() if k in keys}


async def _pump(link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction, each chunk delivered at its own due time, never out of order."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    last_due = 0.0
    try:
        while data := await reader.read(65536):
            last_due = max(last_due, time.monotonic() + link.due_in())
            queue.put_nowait((last_due, data))
            if sender.done():
                break
        queue.put_nowait((last_due, b""))
        await sender
        with contextlib.suppress(OSError):
            writer.write_eof()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        sender.cancel()


async def _serve(
    link: Link, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
) -> None:
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*link.target), timeout=5)
    except (OSError, TimeoutError):
        client_w.close()  # the target is unreachable: the client sees its connection closed
        return
    try:
        await asyncio.gather(_pump(link, client_r, up_w), _pump(link, up_r, client_w))
    finally:
        for w in (client_w, up_w):
            with contextlib.suppress(OSError):
                w.close()


async def _control(
    links: dict[str, Link], r: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    try:
        while line := (await r.readline()).decode().strip():
            verb, name, *pairs = line.split()
            link = links.get(name)
            if link is None:
                w.write(b"error unknown link\n")
            elif verb == "get":
                w.write(json.dumps(link.settings()).encode() + b"\n")
            elif verb == "set":
                for pair in pairs:
                    key, value = pair.split("=", 1)
                    if key not in link.settings():
                        raise ValueError(key)
                    setattr(link, key, float(value))
                w.write(b"ok\n")
            else:
                w.write(b"error unknown verb\n")
            await w.drain()
    except (ValueError, OSError) as exc:
        with contextlib.suppress(OSError):
            w.write(f"error {exc}\n".encode())
    finally:
        w.close()


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--control", type=_address, required=True)
    parser.add_argument("--link", action="append", default=[], help="NAME=LISTEN,TARGET")
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--jitter-ms", type=float, default=5.0)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    links: dict[str, Link] = {}
    for n, spec in enumerate(args.link):
        name, ends = spec.split("=", 1)
        listen, target = ends.split(",")
        links[name] = Link(name, _address(listen), _address(target), args.delay_ms,
                           args.jitter_ms, args.loss, rng=random.Random(args.seed + n))  # fmt: skip
    servers = [
        await asyncio.start_server(lambda r, w, link=link: _serve(link, r, w), *link.listen)
        for link in links.values()
    ]
    servers.append(await asyncio.start_server(lambda r, w: _control(links, r, w), *args.control))
    print("proxy ready", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main())
