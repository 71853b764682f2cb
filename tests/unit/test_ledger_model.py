"""The ledger's plain objects: state names as stored and shown, which states are final, the
order of open states, lane names, and an entry's JSON form (``ledger show``)."""

from __future__ import annotations

from worker.ledger.model import FINAL_STATES, LANE_NAMES, OPEN_STATES, LedgerEntry, State


def test_state_names_are_the_stored_ones() -> None:
    # Stored in Redis, shown by ``ledger show``, used as metric labels: renaming one strands
    # every record written before.
    assert [s.value for s in State] == [
        "initialized", "completed", "result_stored", "evidence_stored", "evidence_lost",
        "archived", "abandoned", "expired",
    ]  # fmt: skip


def test_final_and_open_states() -> None:
    assert {s for s in State if s.final} == FINAL_STATES
    assert {State.ARCHIVED, State.ABANDONED, State.EXPIRED} == FINAL_STATES
    assert not State.EVIDENCE_LOST.final
    assert OPEN_STATES == (
        State.INITIALIZED,
        State.COMPLETED,
        State.RESULT_STORED,
        State.EVIDENCE_STORED,
        State.EVIDENCE_LOST,
    )
    assert LANE_NAMES == {"rt": "realtime", "ar": "archival"}


def test_an_entry_as_json() -> None:
    entry = LedgerEntry(
        transaction_id="tx1",
        state=State.RESULT_STORED,
        product_code="eKYC",
        merchant_biz_id="biz1",
        source="callback",
        created_at=1.0,
        completed_at=2.0,
        deletes_at=3.0,
        due_at=4.0,
        queue="rt",
        attempts=5,
        reason="why",
        history={State.COMPLETED: 2.0, State.RESULT_STORED: 2.5},
    )
    assert entry.to_dict() == {
        "transaction_id": "tx1",
        "state": "result_stored",
        "product_code": "eKYC",
        "merchant_biz_id": "biz1",
        "source": "callback",
        "created_at": 1.0,
        "completed_at": 2.0,
        "deletes_at": 3.0,
        "due_at": 4.0,
        "queue": "rt",
        "attempts": 5,
        "reason": "why",
        "history": {"completed": 2.0, "result_stored": 2.5},
    }
