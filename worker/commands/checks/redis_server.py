"""Doctor checks of every Redis of the deployment: reachable, how it is connected to, durable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from worker.commands.checks.result import REDIS_FIX, CheckResult, describe_unreachable

if TYPE_CHECKING:
    from worker.redisio import RedisTarget
    from worker.wiring import Cli


def check_redis(runtime: Cli) -> CheckResult:
    """Redis answers PING."""
    from redis import RedisError

    from worker.redisio import connect, redis_target

    client = connect(redis_target(runtime.settings.redis), fail_fast=True, socket_timeout=3.0)
    try:
        client.ping()
        info = cast("dict[str, Any]", client.info("server"))
        version = str(info.get("redis_version", "?"))
    except RedisError as exc:
        return CheckResult(
            "redis", False, describe_unreachable(runtime.settings.redis.redis_url, exc), REDIS_FIX
        )
    finally:
        client.close()
    return CheckResult("redis", True, f"Redis {version} answers")


def check_redis_durability(runtime: Cli) -> CheckResult:
    """Every Redis of the deployment persists (AOF or RDB) and does not evict."""
    from redis import RedisError

    from worker.redisio import connect
    from worker.stores.durability import inspect_durability
    from worker.wiring import redis_targets

    details, problems, unreachable = [], [], []
    for target in redis_targets(runtime.settings):
        client = connect(target, fail_fast=True, socket_timeout=3.0)
        try:
            found = inspect_durability(client)
        except RedisError as exc:
            unreachable.append(describe_unreachable(target.url, exc))
            continue
        finally:
            client.close()
        details.append(found.describe())
        problems.extend(found.problems())
    if unreachable:
        return CheckResult("redis durability", False, "; ".join(unreachable), REDIS_FIX)
    if problems:
        return CheckResult(
            "redis durability", False, "; ".join(problems),
            "redis.conf: appendonly yes (or a save schedule) and maxmemory-policy noeviction",
        )  # fmt: skip
    return CheckResult("redis durability", True, "; ".join(details))


def check_redis_connection(runtime: Cli) -> CheckResult:
    """How every Redis client connects: TLS (and its certificate check) and authentication;
    fails where ``IDV_MODE=production`` refuses to start, or a TLS file cannot be read."""
    import os

    from worker.wiring import connection_refusal, redis_targets

    settings = runtime.settings
    redis = settings.redis
    unreadable = [
        f"{name}={path}"
        for name, path in (
            ("IDV_REDIS_TLS_CA_FILE", redis.redis_tls_ca_file),
            ("IDV_REDIS_TLS_CERT_FILE", redis.redis_tls_cert_file),
            ("IDV_REDIS_TLS_KEY_FILE", redis.redis_tls_key_file),
        )
        if path and not os.access(path, os.R_OK)
    ]
    if unreadable:
        return CheckResult(
            "redis connection", False, f"cannot read {', '.join(unreadable)}",
            "point IDV_REDIS_TLS_* at files this process can read",
        )  # fmt: skip
    lines = [_describe_connection(target) for target in redis_targets(settings)]
    refusal = connection_refusal(settings)
    if refusal is not None:
        return CheckResult(
            "redis connection", False, "; ".join(lines),
            "use rediss:// with a password (IDV_MODE=production refuses to start), or set "
            "IDV_REDIS_ALLOW_INSECURE=true",
        )  # fmt: skip
    allowed = " (IDV_REDIS_ALLOW_INSECURE=true)" if redis.redis_allow_insecure else ""
    return CheckResult("redis connection", True, "; ".join(lines) + allowed)


def _describe_connection(target: RedisTarget) -> str:
    """``host:port: TLS (verify required, CA ...), user 'idv' with a password`` (and the
    sentinels')."""
    from urllib.parse import urlsplit

    def tls(on: bool) -> str:
        if not on:
            return "no TLS"
        ca = f", CA {target.tls.ca_file}" if target.tls.ca_file else ", system CAs"
        cert = ", client certificate" if target.tls.cert_file else ""
        return f"TLS (verify {target.tls.verify}{ca}{cert})"

    user = urlsplit(target.url).username
    auth = "no authentication"
    if target.authenticated():
        auth = f"user {user!r} with a password" if user else "a password"
    line = f"{target.where()}: {tls(target.uses_tls)}, {auth}"
    if target.sentinels:
        sentinel_auth = "no authentication"
        if target.sentinel_password:
            name = target.sentinel_username
            sentinel_auth = f"user {name!r} with a password" if name else "a password"
        line += f"; sentinels: {tls(target.sentinels_use_tls)}, {sentinel_auth}"
    return line
