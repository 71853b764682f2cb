"""What the mutation tier mutates, which tests judge each mutant, and the survivors explained.

Each target runs only the fast tests that exercise it (unit tests and the few integration
tests of that module) so the tier stays within half an hour on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    tests: tuple[str, ...]
    # Python only: mutate inside these functions (methods) only; empty = the whole module.
    functions: frozenset[str] = frozenset()


_RECEIVER_UNIT = (
    "tests/unit/onboarding/test_tokens.py",
    "tests/unit/onboarding/test_intake_edges.py",
    "tests/unit/test_receiver.py",
)
_BATCH_CLAIMS = (
    "tests/integration/batch/test_claim_edges.py",
    "tests/integration/batch/test_store.py",
    "tests/unit/test_lua_scripts.py",
    "tests/unit/batch/test_views.py::test_claiming_transport_claims_only_doc_ocr_requests",
    "tests/integration/batch/test_service.py::test_a_claim_left_by_a_dead_worker_makes_the_item_uncertain",
    "tests/integration/batch/test_service.py::test_pause_resume_and_cancel",
)
_LEDGER = (
    "tests/unit/test_ledger_model.py",
    "tests/unit/test_lua_scripts.py",
    "tests/integration/ledger/test_ledger_rules.py",
    "tests/integration/ledger/test_ledger.py",
)

TARGETS: tuple[Target, ...] = (
    Target("tokens", "worker/onboarding/tokens.py", _RECEIVER_UNIT),
    Target(
        "callbacks",
        "worker/onboarding/callbacks.py",
        (
            *_RECEIVER_UNIT,
            "tests/integration/test_receiver_http.py::test_concurrent_repeats_enqueue_exactly_once",
        ),
    ),
    Target(
        "confine",
        "worker/batch/confine.py",
        (
            "tests/unit/batch/test_confine.py",
            "tests/unit/batch/test_confine_edges.py",
            "tests/unit/batch/test_sources.py",
        ),
    ),
    Target(
        "webhook",
        "worker/webhook.py",
        (
            "tests/unit/onboarding/test_documents.py",
            "tests/unit/test_webhook_edges.py",
            "tests/unit/test_events.py",
            "tests/integration/webhook/test_standard_webhooks.py::test_a_timestamp_outside_the_tolerance_is_refused",
            "tests/integration/webhook/test_standard_webhooks.py::test_a_tampered_body_or_another_secret_is_refused",
        ),
    ),
    Target(
        "redaction",
        "worker/observability/redaction.py",
        (
            "tests/unit/observability/test_redaction.py",
            "tests/unit/observability/test_redaction_edges.py",
            "tests/unit/observability/test_logs.py",
        ),
    ),
    Target(
        "signing",
        "worker/cloudauth/signing.py",
        (
            "tests/unit/cloudauth/test_signing_vectors.py",
            "tests/unit/cloudauth/test_signing_edges.py",
            "tests/unit/cloudauth/test_sdk_captures.py",
            "tests/unit/cloudauth/test_client.py",
            "tests/unit/emulator/test_signing.py",
        ),
    ),
    Target("calls", "worker/batch/calls.py", _BATCH_CLAIMS),
    Target(
        "store-claims",
        "worker/batch/store.py",
        _BATCH_CLAIMS,
        functions=frozenset({"claim", "claims"}),
    ),
    Target("claim.lua", "worker/batch/lua/claim.lua", _BATCH_CLAIMS),
    Target("ledger-model", "worker/ledger/model.py", _LEDGER),
    Target("ledger-prelude.lua", "worker/ledger/lua/prelude.lua", _LEDGER),
    Target("ledger-transition.lua", "worker/ledger/lua/transition.lua", _LEDGER),
    Target("ledger-callback.lua", "worker/ledger/lua/callback.lua", _LEDGER),
    Target("ledger-claim.lua", "worker/ledger/lua/claim.lua", _LEDGER),
)

# Survivors judged equivalent (no behaviour changes) or harmless, by "target:line:mutation"
# as the report prints them; each with the reason. docs/development.md summarises them.
EXPLAINED: dict[str, str] = {}
