"""The lifecycle rules of ``idv-worker retention --print`` are those of docs/security.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

from worker.storage import lifecycle_configuration

SECURITY = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()


def test_the_rules_cover_every_personal_prefix_and_match_the_docs() -> None:
    rules = lifecycle_configuration("", 400)["Rules"]
    expiring = {r["Filter"]["Prefix"]: r["Expiration"]["Days"] for r in rules if "Expiration" in r}
    assert expiring == {"evidence/": 400, "results/": 400, "batches/": 400}
    block = re.search(r'```json\n(\{"Rules".*?)\n```', SECURITY, re.S)
    assert block is not None
    assert json.loads(block.group(1)) == {"Rules": rules}


def test_a_prefix_applies_to_every_rule() -> None:
    rules = lifecycle_configuration("tenant-a", 30)["Rules"]
    assert all(r["Filter"]["Prefix"].startswith("tenant-a/") for r in rules)
