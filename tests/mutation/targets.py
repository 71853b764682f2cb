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
_LOG_ONLY = "a log line or logger name only; no behaviour depends on it"
_RACE = (
    "defends against the path being swapped between the check and the open (a race between "
    "two system calls that a test cannot provoke without hooking them); without the race "
    "the other checks (realpath, stat before, fstat after) refuse the same files"
)
_ROOT = "the permission-denied branch: the tests run as root, which reads any file"
_GROWING = (
    "the read loop's bounds: the size was checked on the descriptor first (over 1 MB is "
    "refused), so one read returns the whole file; they matter only if it grows meanwhile"
)
_SETTINGS_DEFAULT = "a constructor default that from_settings always overrides"
_REDUNDANT_EMPTY = (
    "equivalent: configured tokens are never empty (filtered) and None/'' are refused by the "
    "other half of the final check"
)
EXPLAINED: dict[str, str] = {
    "callbacks:48:'callbacks' -> 'XXcallbacksXX'": _LOG_ONLY,
    "callbacks:281:remove Expr statement": _LOG_ONLY,
    "callbacks:295:remove Expr statement": _LOG_ONLY,
    "callbacks:127:'' -> 'XXXX'": _REDUNDANT_EMPTY,
    "callbacks:131:'' -> 'XXXX'": _REDUNDANT_EMPTY + " (differs only for the token 'XXXX')",
    "callbacks:142:'transactionId' -> 'XXtransactionIdXX'": (
        "the field name parse_transaction_id puts in its own message; the intake's 400 "
        "names the parameter itself"
    ),
    "callbacks:189:remove Assign statement": (
        "CallbackIntake.settings is kept for callers; nothing reads it"
    ),
    "confine:54:BitOr -> BitAnd": "the open flags (O_NONBLOCK, O_NOFOLLOW, O_CLOEXEC): " + _RACE,
    "confine:54:0 -> 1": "equivalent on Linux: os.O_NOFOLLOW exists, the default is unused",
    "confine:54:'O_NOFOLLOW' -> 'XXO_NOFOLLOWXX'": "the flag's name: " + _RACE,
    "confine:92:remove If statement": (
        "equivalent on this Python: ipaddress judges an IPv4-mapped address by its IPv4 "
        "address itself; kept for patch releases that do not"
    ),
    "confine:93:remove Return statement": "as confine:92",
    "confine:105:'%' -> 'XX%XX'": (
        "equivalent: ipaddress parses an IPv6 zone suffix (%eth0) itself since Python 3.9"
    ),
    "confine:105:1 -> 2": "equivalent: the first part of the split is the same",
    "confine:128:'/' -> 'XX/XX'": "equivalent: every caller passes `path or '/'`",
    "confine:132:'. ' -> 'XX. XX'": (
        "changes only segments made of X, dots and spaces, which it then also refuses"
    ),
    "confine:132:1 -> 2": "equivalent: the first part of the split is the same",
    "confine:154:'' -> 'XXXX'": (
        "the host of a prefix without one: settings refuse such a prefix, and a URL without "
        "a host is refused before prefixes are compared"
    ),
    "confine:160:'' -> 'XXXX'": "as confine:154",
    "confine:193:15.0 -> 16.0": _SETTINGS_DEFAULT,
    "confine:194:False -> True": "compare= of the resolver field: only policy equality",
    "confine:232:'/' -> 'XX/XX'": (
        "differs only for a source root whose name ends in X, where it then refuses every "
        "file (fails closed)"
    ),
    "confine:241:remove Raise statement": _ROOT,
    "confine:248:remove Raise statement": _ROOT,
    "confine:244:remove Expr statement": "the same check on the open descriptor refuses it",
    "confine:253:remove Raise statement": _RACE,
    "confine:258:remove Expr statement": _RACE,
    "confine:259:remove If statement": _RACE,
    "confine:260:remove Raise statement": _RACE,
    "confine:268:0 -> 1": _GROWING,
    "confine:269:LtE -> Lt": _GROWING,
    "confine:270:Sub -> Add": _GROWING,
    "confine:270:1 -> 2": _GROWING,
    "confine:274:remove AugAssign statement": _GROWING,
    "confine:275:b'' -> b'XXXX'": _GROWING + " (one chunk: the separator is never used)",
    "confine:327:remove Return statement": "equivalent: the function returns None next",
    "confine:351:'' -> 'XXXX'": "equivalent: check_prefix has refused a URL without a host",
    "confine:352:0 -> 1": "equivalent: the scheme is http or https, whose ports are known",
    "webhook:69:10.0 -> 11.0": _SETTINGS_DEFAULT,
    "webhook:117:remove Expr statement": (
        "equivalent: httpx reads a non-streamed response whole and releases its connection"
    ),
    "redaction:65:True -> False": (
        "equivalent: the alternation backtracks, so the order of the keys does not change "
        "what matches (a key must be followed by = or :)"
    ),
    r"""redaction:103:'\\"\'' -> 'XX\\"\'XX'""": ("differs only for values made of X and quotes"),
    "redaction:111:remove If statement": "equivalent: the substitutions leave '' as ''",
    "redaction:112:remove Return statement": "as redaction:111",
    "redaction:138:'surname' -> 'XXsurnameXX'": (
        "also a field of the models (PERSONAL_FIELDS), redacted through that list"
    ),
    "redaction:138:'givenname' -> 'XXgivennameXX'": "as redaction:138 surname",
    "redaction:139:'englishname' -> 'XXenglishnameXX'": "as redaction:138 surname",
    "signing:25:'~' -> 'XX~XX'": "equivalent: quote() never encodes letters",
    "signing:121:remove Return statement": "equivalent: the function returns None next",
    "signing:171:'[A-Za-z0-9_.~+/=-]*' -> 'XX[A-Za-z0-9_.~+/=-]*XX'": (
        "the fast path of form encoding: quote_plus gives the same text, only slower"
    ),
    "signing:175:remove If statement": "as signing:171",
    "signing:176:remove Return statement": "as signing:171",
    "signing:279:'host' -> 'XXhostXX'": (
        "RPC signs no header, and httpx sends Host from the URL, which names the same host"
    ),
    "calls:36:'idv_batch_claim' -> 'XXidv_batch_claimXX'": "a context variable's debug name",
    "store-claims:264:'' -> 'XXXX'": "equivalent: the claim script always answers a reason",
    "ledger-transition.lua:10:true -> false": (
        "equivalent: state names hold no Lua pattern character, so a plain find and a "
        "pattern find agree"
    ),
    "ledger-callback.lua:20:'0' -> XX..XX": (
        "equivalent: the default is read only for a completed record, which always has a due time"
    ),
    "ledger-claim.lua:16:'0' -> XX..XX": (
        "equivalent: a transaction found in a due index always has a due time"
    ),
    "ledger-callback.lua:32:'duplicate' -> XX..XX": (
        "equivalent: Ledger.on_callback reads every verdict but accepted and unknown as a duplicate"
    ),
    "ledger-callback.lua:12:'n' -> XX..XX": (
        "equivalent: an absent attempt count reads as 0, and the first claim's HINCRBY "
        "starts it from 0"
    ),
    "ledger-transition.lua:8:'missing' -> XX..XX": (
        "equivalent: Ledger.transition reads only the 0/1 of the reply"
    ),
}
