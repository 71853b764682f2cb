"""Services built from the blocks: each receives its part(s) of the settings and its clients."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

import httpx

from worker.batch import BatchControl, BatchService, BatchStore, ImageReader, SourcePolicy
from worker.batch import batch_client as make_batch_client
from worker.cloudauth.client import CloudAuthClient
from worker.erasure import Eraser
from worker.evidence import EvidenceArchiver, UploadSweeper
from worker.jobs import WorkSender, draining
from worker.ledger import FlowStarter, Ledger, Reconciler
from worker.onboarding import CallbackIntake, OnboardingService, derive_callback_token
from worker.ratelimit import RedisRateLimiter
from worker.settings import CallbackSettings
from worker.storage import S3ObjectStore
from worker.stores import (
    DeadLetterStore,
    DueIndex,
    Heartbeat,
    HeartbeatLeases,
    LeaseManager,
    ResultStore,
    SubjectIndex,
    UploadRegistry,
)
from worker.stores.replication import ReplicaWait
from worker.webhook import WebhookSender
from worker.wiring.blocks import Core, build_outbox, report


def build_archiver(core: Core, objects: S3ObjectStore, http: httpx.Client) -> EvidenceArchiver:
    s = core.settings
    return EvidenceArchiver(
        objects,
        http,
        core.object_keys,
        part_size=s.evidence.evidence_part_size,
        chunk_size=s.evidence.evidence_chunk_size,
        max_links=s.evidence.evidence_max_links,
        metrics=core.metrics,
        heartbeat_every_s=s.onboarding.onboarding_lease_s / 4,
    )


def build_onboarding(
    core: Core,
    *,
    client: CloudAuthClient,
    objects: S3ObjectStore,
    http: httpx.Client,
    results: ResultStore,
    deadletters: DeadLetterStore,
    ledger: Ledger,
    sender: WorkSender | None = None,
    heartbeat: Heartbeat | None = None,
) -> OnboardingService:
    """The onboarding service; ``sender`` announces the transactions it finds ended (None:
    nothing is announced)."""
    s = core.settings
    manager = LeaseManager(core.redis, core.keys)
    return OnboardingService(
        client=client,
        archiver=build_archiver(core, objects, http),
        objects=objects,
        keys=core.object_keys,
        records=results,
        leases=manager if heartbeat is None else HeartbeatLeases(manager, heartbeat),
        deadletters=deadletters,
        metrics=core.metrics,
        report=report,
        lease_s=s.onboarding.onboarding_lease_s,
        progress=ledger,
        reconcile_after_s=s.ledger.reconcile_after_s,
        sender=sender,
    )


def build_upload_sweeper(core: Core, objects: S3ObjectStore) -> UploadSweeper:
    return UploadSweeper(
        objects,
        UploadRegistry(core.redis, core.keys),
        older_than_s=core.settings.storage.s3_stale_upload_age_s,
        metrics=core.metrics,
    )


def build_reconciler(core: Core, ledger: Ledger, sender: WorkSender) -> Reconciler:
    s = core.settings
    return Reconciler(
        ledger,
        sender,
        s.ledger,
        checkresult_qps=core.quotas.quota_for(s.onboarding.onboarding_product, "CheckResult"),
        metrics=core.metrics,
        report=report,
    )


def build_intake(core: Core, ledger: Ledger, sender: WorkSender) -> CallbackIntake:
    s = core.settings
    return CallbackIntake(
        s.callbacks,
        ledger,
        sender,
        onboarding=s.onboarding,
        known_product=core.quotas.knows,
        metrics=core.metrics,
    )


def build_batch_store(core: Core) -> BatchStore:
    return BatchStore(
        core.redis,
        core.keys,
        core.settings.batch,
        replicas=ReplicaWait.from_settings(core.settings.redis),
    )


def source_policy(core: Core) -> SourcePolicy:
    return SourcePolicy.from_settings(
        core.settings.sources,
        own_bucket=core.settings.storage.s3_bucket,
        object_keys=core.object_keys,
    )


def build_batch_control(
    core: Core,
    store: BatchStore,
    sender: WorkSender,
    *,
    results: ResultStore | None = None,
    objects: S3ObjectStore | None = None,
) -> BatchControl:
    return BatchControl(
        store,
        sender,
        core.settings.batch,
        quotas=core.quotas,
        object_keys=core.object_keys,
        results=results,
        objects=objects,
        metrics=core.metrics,
        due=DueIndex(core.redis, core.keys),
    )


def build_batch_service(
    core: Core,
    stack: ExitStack,
    *,
    store: BatchStore,
    limiter: RedisRateLimiter,
    results: ResultStore,
    objects: S3ObjectStore,
    sender: WorkSender,
    heartbeat: Heartbeat | None = None,
) -> BatchService:
    s = core.settings
    client = make_batch_client(s.provider, limiter)
    stack.callback(client.close)
    reader = ImageReader(
        policy=source_policy(core),
        s3_client=lambda: objects.client,
        timeout=s.provider.read_timeout,
    )
    stack.callback(reader.close)
    return BatchService(
        store=store,
        client=client,
        reader=reader,
        results=results,
        objects=objects,
        enqueuer=sender,
        settings=s.batch,
        object_keys=core.object_keys,
        max_retry_after_s=s.provider.max_retry_after_s,
        metrics=core.metrics,
        heartbeat=heartbeat,
        draining=draining,
    )


def build_webhook_sender(core: Core, stack: ExitStack) -> WebhookSender | None:
    """The result webhook's sender (None when none is configured)."""
    sender = WebhookSender.from_settings(core.settings.webhooks)
    if sender is not None:
        stack.callback(sender.close)
    return sender


def token_for(settings: CallbackSettings) -> Callable[[str], str | None]:
    """The callback token a new flow is started with: good for that flow only when
    ``IDV_CALLBACK_TOKEN_SECRET`` is set, else the first static token (or none)."""
    tokens = [t.get_secret_value() for t in settings.callback_tokens]
    secret = settings.callback_token_secret
    key = secret.get_secret_value() if secret is not None else ""

    def token(merchant_biz_id: str) -> str | None:
        if key:
            return derive_callback_token(key, merchant_biz_id)
        return tokens[0] if tokens else None

    return token


def build_flow_starter(
    core: Core, client: CloudAuthClient, ledger: Ledger, subjects: SubjectIndex
) -> FlowStarter:
    return FlowStarter(
        client,
        ledger,
        callback_url=core.settings.callbacks.callback_url,
        token_for=token_for(core.settings.callbacks),
        subjects=subjects,
    )


def build_eraser(
    core: Core,
    *,
    objects: S3ObjectStore,
    results: ResultStore,
    deadletters: DeadLetterStore,
    batches: BatchStore,
    subjects: SubjectIndex,
    ledger: Ledger,
) -> Eraser:
    return Eraser(
        redis_client=core.redis,
        namespace=core.settings.redis.namespace,
        object_keys=core.object_keys,
        objects=objects,
        results=results,
        deadletters=deadletters,
        batches=batches,
        subjects=subjects,
        ledger_eraser=lambda _kind, tid: int(ledger.delete(tid)),
        outbox=build_outbox(core),
    )
