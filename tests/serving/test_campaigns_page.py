"""The campaigns page and its route: marketing and admin see their bank's campaigns with their lift."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from servingkit import Built, bearer

from nbp.campaigns import CampaignStore
from serving.audit import read_audit
from training.campaign_report import build_report

pytestmark = pytest.mark.integration

CID = "page-test-import"


@pytest.fixture(scope="module")
def campaign(built: Built, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """A randomised campaign of 600 of the bank's customers, imported 150 days before the export."""
    ids = pd.read_parquet(built.ws.table("customers"), columns=["customer_id"])["customer_id"].astype(str)
    chosen = ids.sample(600, random_state=3).tolist()
    arm = np.where(np.random.default_rng(3).random(600) < 0.5, "control", "treatment")
    when = built.ws.export_date() - timedelta(days=150)
    f = tmp_path_factory.mktemp("campaign") / "assign.csv"
    lines = [f"{CID},consumer,{when:%Y-%m-%d},{c},{a}" for c, a in zip(chosen, arm, strict=True)]
    f.write_text("campaign_id,product,list_date,customer_id,arm\n" + "\n".join(lines) + "\n", encoding="utf-8")
    CampaignStore(built.ws.campaigns_dir, built.ws.recorded_bank()).import_file(f)
    return {"treatment": int((arm == "treatment").sum()), "control": int((arm == "control").sum())}


def _row(body: dict, cid: str = CID) -> dict:
    return next(r for r in body["campaigns"] if r["campaign_id"] == cid)


def test_marketing_and_admin_see_the_campaigns_with_the_reports_figures(
    client: Any, built: Built, campaign: dict[str, int]
) -> None:
    r = client.post("/campaigns", json={}, headers=bearer("marketing"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["export_date"] == built.ws.export_date().isoformat()
    row = _row(body)
    assert row["product_name"] == "消费贷" and row["days_observed"] == row["horizon_days"] == 90
    assert {a: row["arms"][a]["customers"] for a in campaign} == campaign
    f = next(c.figures for c in build_report(built.cfg, built.ws, [CID]).campaigns)
    assert row["difference"] == pytest.approx(f["difference"])
    assert row["arms"]["treatment"]["uptakes"] == f["arms"]["treatment"]["uptakes"]
    assert row["verdict_zh"] == f["verdict_zh"]
    assert client.post("/campaigns", json={}, headers=bearer("admin")).json() == body


def test_branch_staff_and_another_bank_are_refused(client: Any, built: Built, campaign: dict[str, int]) -> None:
    r = client.post("/campaigns", json={}, headers=bearer("branch"))
    assert r.status_code == 403 and "role 'branch'" in r.json()["error"] and CID not in r.text
    r = client.post("/campaigns", json={"bank_code": "OTHERBANK"}, headers=bearer("marketing"))
    assert r.status_code == 403 and CID not in r.text
    assert client.post("/campaigns", json={}).status_code == 401
    assert client.post("/campaigns", json={"limit": 3}, headers=bearer("marketing")).status_code == 422
    refused = [a for a in read_audit(built.ws.audit_log) if a["endpoint"] == "/campaigns" and a["status"] == 403]
    assert len(refused) >= 2


def test_the_page_and_its_guide_are_served_under_the_strict_policy(client: Any) -> None:
    r = client.get("/campaigns/")
    assert r.status_code == 200 and "营销活动效果" in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert '<script src="campaigns.js"' in r.text and "<script>" not in r.text and "<style" not in r.text
    for name, kind in (("campaigns.js", "text/javascript"), ("campaigns.css", "text/css")):
        a = client.get(f"/campaigns/{name}")
        assert a.status_code == 200 and a.headers["content-type"].startswith(kind)
    guide = client.get("/campaigns/guide")
    assert guide.status_code == 200 and "<h1>如何阅读营销活动效果</h1>" in guide.text
    assert "<script" not in guide.text and guide.headers["content-security-policy"]
    assert client.get("/campaigns/app.js").status_code == 404  # only the page's own files
    moved = client.get("/campaigns", follow_redirects=False)
    assert moved.status_code in (302, 307) and moved.headers["location"].endswith("/campaigns/")


def test_the_guide_page_renders_the_docs_file() -> None:
    from serving.service import CAMPAIGN_GUIDE, campaign_guide_html

    assert CAMPAIGN_GUIDE == Path(__file__).resolve().parents[2] / "docs" / "campaigns-guide.zh-CN.md"
    html = campaign_guide_html()
    assert "<table>" in html and "Newcombe" in html and "<h2>结论怎么读</h2>" in html


def _member_bank(ws: Any, campaign: str) -> None:
    """A tiny ingested member bank holding customers C00-C19 and one issued campaign of them."""
    import json

    from nbp.campaigns import ListParams

    ids = [f"C{i:02d}" for i in range(20)]
    ws.ingested_dir.mkdir(parents=True)
    pd.DataFrame({"customer_id": ids, "branch_id": "B1", "manager_id": "M1"}).to_parquet(ws.table("customers"))
    pd.DataFrame(
        {
            "customer_id": ids[:3],
            "product": "consumer",
            "grant_date": pd.to_datetime(["2026-07-01"] * 3).astype("datetime64[us]"),
            "end_date": pd.Series([pd.NaT] * 3, dtype="datetime64[us]"),
            "term_months": 12,
        }
    ).to_parquet(ws.table("loans"))
    ws.ingest_meta.write_text(json.dumps({"export_date": "2026-11-01", "bank_code": ws.bank}), encoding="utf-8")
    rows = pd.DataFrame({"customer_id": ids, "score": 0.5, "arm": ["treatment", "control"] * 10})
    CampaignStore(ws.campaigns_dir, ws.bank).issue(
        campaign, ListParams("consumer"), rows, list_date=pd.Timestamp("2026-06-01").date(), model_version=1
    )


def test_in_a_federation_each_token_sees_only_its_own_banks_campaigns(tmp_path: Path) -> None:
    """The route's scoping on two member banks (hand-built tables; the tenants stand in for the
    recommenders, of which the route reads only the bank and its workspace)."""
    import json
    from types import SimpleNamespace

    from nbp.config import load_config
    from nbp.workspace import Workspace
    from serving.audit import AuditLog
    from serving.auth import Principal, Tenancy
    from serving.schemas import CampaignsRequest
    from serving.service import NbpService

    home = Workspace(tmp_path / "home")
    for bank in ("AAA", "BBB"):
        _member_bank(home.for_bank(bank), f"{bank.lower()}-spring")
    svc = NbpService.inner.__new__(NbpService.inner)
    svc.cfg, svc.recommender, svc.unloaded = load_config(), None, {}
    svc.tenancy = Tenancy(True, ("AAA", "BBB"))
    svc.tenants = {b: SimpleNamespace(bank=b, ws=home.for_bank(b)) for b in ("AAA", "BBB")}
    svc.audit = AuditLog(home.audit_log)

    def ask(role: str, bank: str | None, bank_code: str | None = None) -> tuple[int, Any]:
        r = svc.answer_campaigns(CampaignsRequest(bank_code=bank_code), Principal(role, None, "fp", bank))
        return r.status_code, json.loads(r.body)

    status, body = ask("marketing", "BBB")
    assert status == 200 and [c["campaign_id"] for c in body["campaigns"]] == ["bbb-spring"]
    assert body["bank_code"] == "BBB"
    status, body = ask("admin", "BBB", "AAA")
    assert status == 403 and "aaa-spring" not in json.dumps(body)
    status, body = ask("federation_admin", None, "AAA")
    assert status == 200 and [c["campaign_id"] for c in body["campaigns"]] == ["aaa-spring"]
    assert ask("federation_admin", None)[0] == 422  # it names the bank
