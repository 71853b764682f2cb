"""The CLI command's builder: one per command run, closed with the command (``with Cli() as cli``).

A command asks for what it uses (``cli.ledger()``, ``cli.eraser()`` ...); each call builds that
service from the settings parts and registers what it opens on the command's exit stack.
"""

from __future__ import annotations

from contextlib import ExitStack
from functools import cached_property
from types import TracebackType
from typing import Self

from celery import Celery
from redis import Redis

from worker.app import create_app
from worker.batch import BatchAPI
from worker.cloudauth.client import CloudAuthClient
from worker.erasure import Eraser
from worker.jobs import WorkSender, register_retries
from worker.ledger import FlowStarter, Ledger, Reconciler
from worker.onboarding import CallbackIntake
from worker.settings import Settings, load_settings
from worker.storage import S3ObjectStore
from worker.stores import DeadLetterStore, ResultStore
from worker.wiring import blocks, services


class Cli:
    """What one CLI command (or an embedding application) builds (see the module docstring)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        app: Celery | None = None,
        redis: Redis | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.stack = ExitStack()
        self.core = blocks.build_core(self.settings, self.stack, redis=redis)
        self._app = app

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close everything this command opened."""
        self.stack.close()

    @property
    def redis(self) -> Redis:
        return self.core.redis

    # Each built once per command: a command that asks twice gets the same one.
    @cached_property
    def app(self) -> Celery:
        if self._app is not None:
            return self._app
        app = create_app(self.settings)
        self.stack.callback(app.close)
        return app

    @cached_property
    def sender(self) -> WorkSender:
        return blocks.build_sender(self.core, self.app, self.stack)

    @cached_property
    def client(self) -> CloudAuthClient:
        return blocks.build_client(
            self.core, blocks.build_limiter(self.core, self.stack), self.stack
        )

    @cached_property
    def objects(self) -> S3ObjectStore:
        return blocks.build_objects(self.core, self.stack)

    @cached_property
    def ledger(self) -> Ledger:
        return blocks.build_ledger(self.core)

    @cached_property
    def results(self) -> ResultStore:
        return blocks.build_results(self.core)

    @cached_property
    def deadletters(self) -> DeadLetterStore:
        return blocks.build_deadletters(self.core)

    def retrying_deadletters(self) -> DeadLetterStore:
        """The dead-letter store with every kind's retry registered (``dlq retry``)."""
        store = self.deadletters
        register_retries(store, self.sender)
        return store

    def reconciler(self) -> Reconciler:
        return services.build_reconciler(self.core, self.ledger, self.sender)

    def intake(self) -> CallbackIntake:
        return services.build_intake(self.core, self.ledger, self.sender)

    def flow_starter(self) -> FlowStarter:
        return services.build_flow_starter(
            self.core, self.client, self.ledger, blocks.build_subjects(self.core)
        )

    def eraser(self) -> Eraser:
        return services.build_eraser(
            self.core,
            objects=self.objects,
            results=self.results,
            deadletters=self.deadletters,
            batches=services.build_batch_store(self.core),
            subjects=blocks.build_subjects(self.core),
            ledger=self.ledger,
        )

    def batches(self) -> BatchAPI:
        """The batch API; the broker and S3 are reached only when an operation needs them.
        Closing the API closes this builder."""
        core = self.core
        return BatchAPI(
            self.settings.batch,
            store=services.build_batch_store(core),
            result_store=self.results,
            policy=services.source_policy(core),
            subjects=blocks.build_subjects(core),
            quotas=core.quotas,
            object_keys=core.object_keys,
            make_enqueuer=lambda: self.sender,
            make_objects=lambda: self.objects,
            on_close=self.close,
        )
