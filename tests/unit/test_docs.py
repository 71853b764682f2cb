"""The documentation: generated references current, links resolving, a runbook per alert."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from worker.devtools import docsgen
from worker.settings import OWNERS, PARTS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def broken_links(page: Path) -> list[str]:
    """Relative links of a Markdown page whose target file does not exist."""
    text = FENCE.sub("", page.read_text())
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # an absolute URL or an anchor of the same page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    return broken


def test_the_generated_references_are_current() -> None:
    assert docsgen.stale_pages() == []


def test_a_stale_page_is_reported(tmp_path: Path) -> None:
    assert docsgen.write_pages(tmp_path) == list(docsgen.PAGES)
    assert docsgen.stale_pages(tmp_path) == []
    page = tmp_path / "settings.md"
    page.write_text(page.read_text().replace("`IDV_NAMESPACE`", "`IDV_NAME_SPACE`"))
    (tmp_path / "metrics.md").unlink()
    assert docsgen.stale_pages(tmp_path) == ["settings.md", "metrics.md"]
    assert docsgen.main(["--check", "--out", str(tmp_path)]) == 1


def test_the_settings_reference_lists_every_variable_under_its_part() -> None:
    rows = list(docsgen._settings_fields())
    text = (DOCS / "reference" / "settings.md").read_text()
    assert len(rows) > 80
    assert [r.env for r in rows if f"| `{r.env}` |" not in text] == []
    assert {r.section for r in rows} == set(PARTS)
    assert all(OWNERS[r.env.removeprefix("IDV_").lower()] == r.section for r in rows)
    titles = {s.part: s.title for s in docsgen._settings_sections()}
    sections = {
        block.split("\n", 1)[0]: block for block in text.split("\n## ")[1:]
    }  # heading -> its text
    misplaced = [r.env for r in rows if f"| `{r.env}` |" not in sections[titles[r.section]]]
    assert misplaced == []
    assert "In code: `settings.redis` (`RedisSettings`)." in sections["Redis"]
    assert sections["Redis"].startswith("Redis\n\nThe Redis of the limiter")  # its docstring


def test_the_references_cover_commands_metrics_and_the_result_record() -> None:
    cli = (DOCS / "reference" / "cli.md").read_text()
    for command in ("idv-worker batch submit", "idv-worker dlq retry", "idv-worker retention"):
        assert f"`{command}`" in cli
    metrics = (DOCS / "reference" / "metrics.md").read_text()
    assert "`idv_archival_expired_total`" in metrics
    assert "`ledger-sweep`" in metrics  # a dead-letter kind
    record = (DOCS / "reference" / "result-record.md").read_text()
    assert '"title": "ResultRecord"' in record


def test_every_relative_link_resolves() -> None:
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    assert len(pages) > 30
    assert {str(p.relative_to(ROOT)): broken_links(p) for p in pages if broken_links(p)} == {}


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# there\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#x) [gone](missing.md) [web](https://example.com) ![img](no.png)\n"
        "```\n[in code](ignored.md)\n```\n"
    )
    assert broken_links(page) == ["missing.md"]


def test_every_alert_has_a_runbook_at_the_site_url() -> None:
    site_url = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["site_url"]
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    rules = [rule for group in alerts["groups"] for rule in group["rules"]]
    index = (DOCS / "runbooks" / "index.md").read_text()
    nav = (ROOT / "mkdocs.yml").read_text()
    assert len(rules) >= 18
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(site_url + "runbooks/"), rule["alert"]
        name = url[len(site_url + "runbooks/") :].rstrip("/")
        assert (DOCS / "runbooks" / f"{name}.md").is_file(), rule["alert"]
        assert f"]({name}.md)" in index
        assert f"runbooks/{name}.md" in nav
