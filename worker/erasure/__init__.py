"""Erasure on request: everything kept about a transaction, a merchant user or a batch goes.

``idv-worker erase --transaction TID | --merchant-user ID | --batch ID`` runs ``Eraser``:

* **transaction**: the result record (it names the S3 objects), the result document and every
  evidence object (``evidence/<date>/<tid>/``; without a record both prefixes are searched),
  each with every version and delete marker and any upload in progress (``S3ObjectStore.purge``),
  the callback marker, leases, dead letters (``onboarding``, ``evidence``, ``webhook``: the
  events' dead letters are kept under ``tx:<tid>:<event id>``), its events in the webhook
  outbox (``worker.jobs.outbox``), the events of the transaction on the results stream
  (XDEL), its membership in the merchant-user index, and its ledger entries
  (``ledger_eraser``; see below);
* **merchant user**: every transaction and batch the index (``worker.stores.subjects``) lists
  for the id's keyed pseudonym (Redis, the provider and the audit only ever see the pseudonym;
  the raw id is given here and hashed); in a batch, each row of that user loses its source and
  pseudonym (the chunk is rewritten), its item's S3 document, record, events, claim and owner
  entry; a pending row becomes ``invalid`` (code ``Erased``); the batch's exported results are
  written again without the rows and their earlier versions are purged; the index key goes
  last;
* **batch**: every Redis key and S3 object of the batch, its item records, dead letters
  (its webhook events' too, ``batch:<id>:<event id>``), leases, events, its events in the
  webhook outbox, and its index memberships.

S3 copies erasure cannot remove are listed in the report's ``remaining`` (key, version, why):
versions under Object Lock retention or legal hold, and keys the bucket replicates elsewhere
(``worker.storage.purge``). Nothing is dropped silently.

Each run appends one entry to the audit stream ``<ns>audit``: when, by whom (the operator),
what kind of subject, the subject as a keyed pseudonym (``Pseudonyms``, HMAC under
``IDV_SUBJECT_KEY``: transaction and merchant user ids identify a person and cannot be
recovered from it by hashing candidates; batch ids are not personal and stay as they are) and
how many objects, versions, uploads, keys, events, dead letters, leases, rows and ledger
entries went, and how many copies remain. No personal data.

The ledger's entries go through ``ledger_eraser(kind, id) -> int`` (``Cli.eraser`` passes
``Ledger.delete``).

The package: ``report`` (``ErasureReport``), ``objects`` (the S3 side: every version, delete
marker and upload of a prefix), ``keyspace`` (the Redis side: keys, dead letters, stream
entries, outbox events, the audit entry), ``eraser`` (``Eraser``: what goes for each kind of
subject).
"""

from worker.erasure.eraser import (
    BATCH_DEAD_LETTER_KINDS,
    ERASED_SOURCE,
    TX_DEAD_LETTER_KINDS,
    Eraser,
    LedgerEraser,
)
from worker.erasure.keyspace import AUDIT_MAXLEN, KeyspaceEraser
from worker.erasure.objects import ObjectPurger
from worker.erasure.report import ErasureReport

__all__ = [
    "AUDIT_MAXLEN",
    "BATCH_DEAD_LETTER_KINDS",
    "ERASED_SOURCE",
    "TX_DEAD_LETTER_KINDS",
    "Eraser",
    "ErasureReport",
    "KeyspaceEraser",
    "LedgerEraser",
    "ObjectPurger",
]
