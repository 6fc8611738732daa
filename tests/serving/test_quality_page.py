"""The data-quality page and its route: every role reads its own bank's figures, a branch token its branch only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from servingkit import TOKENS, Built, bearer
from test_service_http import CHROMIUM, _page_dom, server  # noqa: F401 - server: the module's fixture

from serving.audit import read_audit
from training.quality_report import page_data

pytestmark = pytest.mark.integration


def _other_branch(built: Built) -> str:
    branches = pd.read_parquet(built.ws.table("customers"), columns=["branch_id"])["branch_id"].astype(str)
    return sorted(set(branches) - {built.branch})[0]


def test_marketing_and_admin_read_the_whole_bank(client: Any, built: Built) -> None:
    r = client.post("/quality", json={}, headers=bearer("marketing"))
    assert r.status_code == 200, r.text
    body = r.json()
    # the fixture's ingest recorded one snapshot: its export date
    assert body["dates"] == [built.ws.export_date().isoformat()] and body["branch_id"] is None
    want = page_data(built.cfg, built.ws)
    assert [b["branch_id"] for b in body["branches"]] == [b["branch_id"] for b in want["branches"]]
    assert len(body["branches"]) > 1 and body["set_aside"]
    assert [t["zh"] for t in body["trend"]][0] == "全部字段"
    assert [f["field"] for f in body["fields"]] == list(built.cfg.quality.fields)
    assert client.post("/quality", json={}, headers=bearer("admin")).json() == body
    one = client.post("/quality", json={"branch_id": built.branch}, headers=bearer("admin")).json()
    assert [b["branch_id"] for b in one["branches"]] == [built.branch] and one["set_aside"] == []


def test_a_branch_token_sees_its_own_branch_only(client: Any, built: Built) -> None:
    r = client.post("/quality", json={}, headers=bearer("branch"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["branch_id"] == built.branch and [b["branch_id"] for b in body["branches"]] == [built.branch]
    assert body["set_aside"] == []  # the bank's ingest is not a branch's business
    other = _other_branch(built)
    r = client.post("/quality", json={"branch_id": other}, headers=bearer("branch"))
    assert r.status_code == 403 and other not in r.text
    refused = [a for a in read_audit(built.ws.audit_log) if a["endpoint"] == "/quality" and a["status"] == 403]
    assert refused


def test_refusals(client: Any) -> None:
    assert client.post("/quality", json={}).status_code == 401
    assert client.post("/quality", json={"bank_code": "OTHERBANK"}, headers=bearer("marketing")).status_code == 403
    assert client.post("/quality", json={"branch_id": "NO-SUCH"}, headers=bearer("admin")).status_code == 404
    assert client.post("/quality", json={"top": 3}, headers=bearer("admin")).status_code == 422


def test_the_page_is_served_under_the_strict_policy(client: Any) -> None:
    r = client.get("/quality/")
    assert r.status_code == 200 and "客户信息完整率" in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert '<script src="quality.js"' in r.text and "<script>" not in r.text and "<style" not in r.text
    for name, kind in (
        ("quality.js", "text/javascript"),
        ("quality.css", "text/css"),
        ("signin.js", "text/javascript"),
    ):
        a = client.get(f"/quality/{name}")
        assert a.status_code == 200 and a.headers["content-type"].startswith(kind)
    assert client.get("/quality/app.js").status_code == 404
    assert client.get("/quality", follow_redirects=False).headers["location"].endswith("/quality/")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser installed (apt-get install chromium)")
def test_the_page_draws_the_trend_and_the_branches(server: str, built: Built, tmp_path: Path) -> None:  # noqa: F811
    want = page_data(built.cfg, built.ws)
    dom = _page_dom(f"{server}/quality/#token={TOKENS['marketing']}", tmp_path)
    assert "客户信息完整率趋势（全行）" in dom and 'id="result" hidden' not in dom
    assert dom.count("<circle") == sum(v is not None for t in want["trend"] for v in t["completeness"])
    assert [f'data-branch="{b["branch_id"]}"' in dom for b in want["branches"]] == [True] * len(want["branches"])
    assert TOKENS["marketing"] not in dom  # the token left the URL and the page
    mine = _page_dom(f"{server}/quality/#token={TOKENS['branch']}", tmp_path)
    assert f"支行 {built.branch}" in mine and mine.count("data-branch=") == 1
    assert 'id="aside-card" hidden' in mine
    # the campaigns page signs in through the same script (signin.js)
    campaigns = _page_dom(f"{server}/campaigns/#token={TOKENS['marketing']}", tmp_path)
    assert '<h2 id="result-title">营销活动</h2>' in campaigns and 'id="result" hidden' not in campaigns
    refused = _page_dom(f"{server}/campaigns/#token={TOKENS['branch']}", tmp_path)
    assert "该令牌无权查看营销活动（仅限营销和管理角色）。</p>" in refused and 'id="login" hidden' not in refused
