"""Hosts on one machine: network namespaces on a bridge in a router namespace.

::

    operator (this process, root namespace) 10.77.0.254 ─┐
    router: bridge br0 10.77.0.1, proxy addresses .101-.104   ├─ veth ─ each host's eth0
    redis .10   s3 .11   emulator .12   receiver .13   w1 .21   w2 .22   w3 .23

Hosts reach a service through its proxy address on the router (``tests.hosts.proxy``: delay,
jitter, loss); the operator reaches every host directly. Faults: a link set down (the host is cut
from everyone) or a blackhole route on one host to one proxy address (that host is cut from
that service). Everything is named ``idvh-*`` so ``teardown`` can find what an earlier run left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence

PREFIX = "idvh-"
ROUTER = f"{PREFIX}router"
SUBNET = "10.77.0"
ROUTER_IP = f"{SUBNET}.1"
OPERATOR_IP = f"{SUBNET}.254"
OPERATOR_LINK = f"{PREFIX}op"
HOSTS: dict[str, str] = {
    "redis": f"{SUBNET}.10",
    "s3": f"{SUBNET}.11",
    "emulator": f"{SUBNET}.12",
    "receiver": f"{SUBNET}.13",
    "w1": f"{SUBNET}.21",
    "w2": f"{SUBNET}.22",
    "w3": f"{SUBNET}.23",
}
# The address other hosts use for a service: its proxy on the router.
PROXIED: dict[str, str] = {
    "redis": f"{SUBNET}.101",
    "s3": f"{SUBNET}.102",
    "emulator": f"{SUBNET}.103",
    "receiver": f"{SUBNET}.104",
}


def ns(host: str) -> str:
    return f"{PREFIX}{host}"


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run ``ip`` (in ``netns`` if given); its output."""
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done.stdout


def unavailable() -> str | None:
    """Why namespaces cannot be built here, or None."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{PREFIX}probe"
    try:
        ip("netns", "add", probe)
    except RuntimeError as exc:
        return f"`ip netns add` fails here: {exc}"
    ip("netns", "del", probe, check=False)
    return None


def exec_prefix(host: str) -> list[str]:
    """The command prefix that runs a program on ``host``."""
    return ["ip", "netns", "exec", ns(host)]


def build() -> None:
    """Create the router, its bridge and proxy addresses, every host and the operator's link."""
    teardown()
    ip("netns", "add", ROUTER)
    ip("link", "set", "lo", "up", netns=ROUTER)
    ip("link", "add", "br0", "type", "bridge", netns=ROUTER)
    for address in (ROUTER_IP, *PROXIED.values()):
        ip("addr", "add", f"{address}/24", "dev", "br0", netns=ROUTER)
    ip("link", "set", "br0", "up", netns=ROUTER)
    for host, address in HOSTS.items():
        ip("netns", "add", ns(host))
        ip("link", "set", "lo", "up", netns=ns(host))
        ip("link", "add", f"v-{host}", "netns", ROUTER, "type", "veth",
           "peer", "name", "eth0", "netns", ns(host))  # fmt: skip
        ip("link", "set", f"v-{host}", "master", "br0", "up", netns=ROUTER)
        ip("addr", "add", f"{address}/24", "dev", "eth0", netns=ns(host))
        ip("link", "set", "eth0", "up", netns=ns(host))
    ip("link", "add", OPERATOR_LINK, "type", "veth", "peer", "name", "v-op", "netns", ROUTER)
    ip("link", "set", "v-op", "master", "br0", "up", netns=ROUTER)
    ip("addr", "add", f"{OPERATOR_IP}/24", "dev", OPERATOR_LINK)
    ip("link", "set", OPERATOR_LINK, "up")


def cut_host(host: str) -> None:
    """Take ``host``'s link to the bridge down: nobody reaches it, it reaches nobody."""
    ip("link", "set", f"v-{host}", "down", netns=ROUTER)


def heal_host(host: str) -> None:
    ip("link", "set", f"v-{host}", "up", netns=ROUTER)


def cut_route(host: str, service: str) -> None:
    """Blackhole ``host``'s route to ``service`` (its proxy address): only that pair is cut."""
    ip("route", "add", "blackhole", f"{PROXIED[service]}/32", netns=ns(host))


def heal_route(host: str, service: str) -> None:
    ip("route", "del", "blackhole", f"{PROXIED[service]}/32", netns=ns(host))


def namespaces() -> list[str]:
    """The ``idvh-*`` namespaces that exist now."""
    names = [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]
    return [name for name in names if name.startswith(PREFIX)]


def pids_in(names: Sequence[str]) -> list[int]:
    pids: list[int] = []
    for name in names:
        pids += [int(p) for p in ip("netns", "pids", name, check=False).split()]
    return pids


def teardown() -> None:
    """Kill the processes left in ``idvh-*`` namespaces (by pid), delete them and the link."""
    names = namespaces()
    for pid in pids_in(names):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for name in names:
        ip("netns", "del", name, check=False)
    ip("link", "del", OPERATOR_LINK, check=False)
