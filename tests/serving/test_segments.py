"""Segments (客群) on a small simulated federation: counts against pandas, breakdown, saved segments,
the workbook, the CLI and ``POST /segments`` with its tenancy.

One module fixture simulates two member banks (600 and 400 customers, 8 months), ingests them and
builds their feature tables (tiers included; no Feast, no models), then writes batch scores for bank
A at its latest as-of in the layout ``nbp score`` writes. Bank B has one customer whose manager id is
a spreadsheet formula, for the workbook's guard.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from bankexport.spec import TABLES
from nbp.config import Config, load_config
from nbp.errors import FeatureStoreError, SegmentError
from nbp.workspace import Workspace
from serving.segments import (
    SHIPPED_DIR,
    breakdown_table,
    find_segment,
    run_segment,
    saved_segments,
    write_workbook,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A, B = "QINGSHAN", "BAISHA"  # the codes simulate_federation(k=2) gives, the larger bank first
HOSTILE = '=HYPERLINK("http://x","y")'
FED_ADMIN = "fa-seg-0123456789abcdef"


def _token(bank: str, role: str) -> str:
    return f"{role[:3]}-seg-{bank.lower()}-0123456789"


@dataclass(frozen=True)
class Fed:
    ws: Workspace
    cfg: Config
    as_ofs: list[date]  # bank A's built as-of dates

    def bank(self, code: str) -> Workspace:
        return self.ws.for_bank(code)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Fed:
    from bankexport.ingest import ingest
    from bankexport.sim_federation import simulate_federation
    from features.build import build, built_as_of

    home = tmp_path_factory.mktemp("segments") / "home"
    ws, cfg = Workspace(home), load_config()
    simulate_federation(home / "export", 2, seed=5, sizes=[600, 400], months=8)
    for code in (A, B):
        ingest(home / "export" / code / "export", ws, cfg.ingest)
    assert sorted(ws.banks()) == sorted([A, B])
    path = ws.for_bank(B).table("customers")
    cust = pd.read_parquet(path)
    cust.loc[0, "manager_id"] = HOSTILE
    cust.to_parquet(path, index=False)
    for code in (A, B):
        build(ws.for_bank(code), cfg=cfg)
    a = ws.for_bank(A)
    as_ofs = sorted(built_as_of(a))
    t = pd.Timestamp(as_ofs[-1])
    known = pd.read_parquet(a.table("customers")).query("open_date < @t")["customer_id"].astype(str)
    rng = np.random.default_rng(3)
    parts = []
    for product, share in (("consumer", 1.0), ("business_flow", 0.5)):
        ids = known[rng.random(len(known)) < share].to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "bank_code": A,
                    "customer_id": ids,
                    "product": product,
                    "as_of": t,
                    "score": rng.random(len(ids)),
                    "model_version": 1,
                    "uplift": rng.normal(0.0, 0.05, len(ids)) if product == "consumer" else np.nan,
                }
            )
        )
    a.scores_dir.mkdir(parents=True, exist_ok=True)
    pd.concat(parts, ignore_index=True).to_parquet(a.latest_scores, index=False)
    return Fed(ws, cfg, as_ofs)


def _at(ws: Workspace, family: str, t: date) -> pd.DataFrame:
    df = pd.read_parquet(ws.feature_table(family))
    return df[df["event_timestamp"] == pd.Timestamp(t)].set_index("customer_id")


def _code(column: str, value: str) -> int:
    return list(TABLES["customers"].column(column).enum).index(value)


# ----------------------------------------------------------------------------- the frame and counts


def test_count_equals_a_pandas_computation_of_the_same_filter(fed: Fed) -> None:
    ws, t = fed.bank(A), fed.as_ofs[-1]
    cust = pd.read_parquet(ws.table("customers"))
    cust = cust[cust["open_date"] < pd.Timestamp(t)].set_index("customer_id")
    branch = str(cust["branch_id"].value_counts().index[-1])
    where = (
        f'demo_occupation in ("farmer", "企业职工") and demo_age_years >= 35 and branch_id != "{branch}" '
        f'or tier in ("中端", "high") and score_consumer >= 0.5'
    )
    got = run_segment(fed.cfg, ws, where)

    demo, tier = _at(ws, "demo", t), _at(ws, "tier", t)
    scores = pd.read_parquet(ws.latest_scores).query("product == 'consumer'").set_index("customer_id")["score"]
    df = cust.join(demo[["demo_occupation", "demo_age_years"]]).join(tier[["tier_level"]]).join(scores)
    first = (
        df["demo_occupation"].isin([_code("occupation", "farmer"), _code("occupation", "enterprise_employee")])
        & (df["demo_age_years"] >= 35)
        & (df["branch_id"] != branch)
        & df["branch_id"].notna()
    )
    second = df["tier_level"].isin([0, 1]) & (df["score"] >= 0.5)
    want = set(df.index[(first.fillna(False) | second.fillna(False)).astype(bool)])

    assert got.count == len(want) > 0
    assert set(got.customers["customer_id"]) == want
    assert got.as_of == t and got.fields == ("demo_occupation", "demo_age_years", "branch_id", "tier", "score_consumer")
    listed = got.customers.set_index("customer_id")
    assert listed["score_consumer"].to_dict() == pytest.approx(scores.reindex(listed.index).to_dict(), nan_ok=True)
    assert set(listed["tier_zh"]) <= {lv.zh for lv in fed.cfg.tiers.levels}


def test_breakdown_sums_to_the_count_and_shares_are_of_the_branch(fed: Fed) -> None:
    ws, t = fed.bank(A), fed.as_ofs[-1]
    got = run_segment(fed.cfg, ws, "demo_age_years >= 40")
    b = got.breakdown
    assert b["customers"].sum() == got.count > 0
    cust = pd.read_parquet(ws.table("customers"))
    sizes = cust[cust["open_date"] < pd.Timestamp(t)]["branch_id"].value_counts()
    assert (b["branch_customers"] == b["branch_id"].map(sizes)).all()
    assert np.allclose(b["share_of_branch"], b["customers"] / b["branch_customers"])
    per = got.customers.groupby(["branch_id", "tier_zh"]).size()
    assert per.to_dict() == b.set_index(["branch_id", "tier_zh"])["customers"].to_dict()
    table = breakdown_table(fed.cfg, got)
    assert list(table.columns[1:4]) == [lv.zh for lv in fed.cfg.tiers.levels]
    assert table["合计"].sum() == got.count


def test_every_shipped_segment_runs(fed: Fed) -> None:
    shipped = [s for s in saved_segments(fed.bank(A)) if s.shipped]
    assert len(shipped) >= 2 and all(s.zh for s in shipped)
    size = len(run_segment(fed.cfg, fed.bank(A), "branch_id is not null or branch_id is null").customers)
    for s in shipped:
        got = run_segment(fed.cfg, fed.bank(A), name=s.name)
        assert got.name == s.name and got.zh == s.zh and 0 <= got.count <= size


# ----------------------------------------------------------------------------- saved segments


def test_a_saved_segment_gives_the_same_customers_at_its_as_of(fed: Fed) -> None:
    ws, earlier = fed.bank(A), fed.as_ofs[-3]
    where = "tier_level <= 1 and holdings_accounts_open_count >= 2 and manager_id is not null"
    first = run_segment(fed.cfg, ws, where, as_of=earlier, save_as="mid_many_accounts", created_by="test")
    record = yaml.safe_load((ws.segments_dir / "mid_many_accounts.yaml").read_text(encoding="utf-8"))
    assert record["where"] == where and record["as_of"] == earlier.isoformat() and record["created_by"] == "test"
    assert record["created_at"]
    again = run_segment(fed.cfg, ws, name="mid_many_accounts")  # the saved as-of, not the latest
    assert again.as_of == earlier != fed.as_ofs[-1]
    assert again.count == first.count > 0
    assert again.customers.equals(first.customers)
    latest = run_segment(fed.cfg, ws, where)
    assert latest.as_of == fed.as_ofs[-1]
    assert find_segment(ws, "mid_many_accounts").created_by == "test"
    run_segment(fed.cfg, ws, where, as_of=earlier, save_as="mid_many_accounts")  # the same again: a no-op
    with pytest.raises(SegmentError, match="is taken"):
        run_segment(fed.cfg, ws, "tier_level == 0", as_of=earlier, save_as="mid_many_accounts")
    with pytest.raises(SegmentError, match="is taken"):
        run_segment(fed.cfg, ws, "tier_level == 0", save_as="payroll_public_no_consumer")
    with pytest.raises(SegmentError, match="did you mean mid_many_accounts"):
        run_segment(fed.cfg, ws, name="mid_many_acounts")
    with pytest.raises(SegmentError, match="segment name"):
        run_segment(fed.cfg, ws, "tier_level == 0", save_as="../escape")
    assert not (fed.bank(B).segments_dir / "mid_many_accounts.yaml").exists()  # each bank its own


def test_unbuilt_as_of_and_absent_scores_are_clear_errors(fed: Fed) -> None:
    with pytest.raises(SegmentError, match=r"as-of 2026-11-15: no features built.*nearest is"):
        run_segment(fed.cfg, fed.bank(A), "tier_level == 0", as_of=date(2026, 11, 15))
    with pytest.raises(FeatureStoreError, match=r"no batch scores at .* for score_consumer"):
        run_segment(fed.cfg, fed.bank(B), "score_consumer > 0.1")
    with pytest.raises(SegmentError, match="either a filter"):
        run_segment(fed.cfg, fed.bank(A))
    assert SHIPPED_DIR.is_dir()


# ----------------------------------------------------------------------------- the workbook


def test_workbook_has_chinese_headers_and_guards_formulas(fed: Fed, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    where = f"manager_id == '{HOSTILE}' or demo_age_years < 30"
    got = run_segment(fed.cfg, fed.bank(B), where)
    assert HOSTILE in set(got.customers["manager_id"])
    path = write_workbook(fed.cfg, got, tmp_path / "seg.xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames == ["概要", "按支行和层级", "客户清单"]
    summary = {r[0]: r[1] for r in wb["概要"].iter_rows(min_row=2, values_only=True)}
    assert summary["筛选条件"] == where and summary["客户数"] == got.count and summary["银行"] == B
    listing = wb["客户清单"]
    header = [c.value for c in listing[1]]
    assert header == ["客户号", "支行", "客户经理", "客户层级", "年龄(周岁)"]  # bank B has no scores
    cells = [row[2] for row in listing.iter_rows(min_row=2)]
    hostile = [c for c in cells if c.value and "HYPERLINK" in c.value]
    assert [c.value for c in hostile] == ["'" + HOSTILE] and hostile[0].data_type == "s"
    assert listing.max_row == got.count + 1
    table = [c.value for c in wb["按支行和层级"][1]]
    assert table[0] == "支行" and table[-3:] == ["合计", "支行客户数", "占支行客户比例"]


# ----------------------------------------------------------------------------- the CLI


def test_cli_prints_the_count_and_table_and_refuses_a_bad_filter(
    fed: Fed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from nbp.cli import main

    monkeypatch.setenv("NBP_HOME", str(fed.ws.home))
    out = tmp_path / "p.xlsx"
    res = CliRunner().invoke(main, ["segment", "--bank", A, "--name", "payroll_public_no_consumer", "--out", str(out)])
    assert res.exit_code == 0, res.output
    count = run_segment(fed.cfg, fed.bank(A), name="payroll_public_no_consumer").count
    assert f"{count:,} customers" in res.output and "合计" in res.output and out.exists()
    res = CliRunner().invoke(main, ["segment", "--bank", A, "--where", "score_consumr > 0.2"])
    assert res.exit_code == 1 and "did you mean score_consumer" in res.output
    res = CliRunner().invoke(main, ["segment", "--where", "tier_level == 0"])
    assert res.exit_code == 1 and "add --bank CODE" in res.output
    res = CliRunner().invoke(main, ["segment", "list", "--bank", A])
    assert res.exit_code == 0 and "payroll_public_no_consumer" in res.output and "代发工资" in res.output
    res = CliRunner().invoke(main, ["segment", "fields"])
    assert res.exit_code == 0 and "civil_servant/公务员" in res.output and "score_consumer" in res.output


# ----------------------------------------------------------------------------- the service


@pytest.fixture(scope="module")
def client(fed: Fed) -> Iterator[Any]:
    """The service on the federation (bank A: marketing, branch; bank B: admin; a federation_admin)."""
    import bentoml
    from _bentoml_sdk.service import set_current_service
    from bentoml.exceptions import BentoMLException
    from starlette.testclient import TestClient

    from serving.service import NbpService

    branch = str(pd.read_parquet(fed.bank(A).table("customers"))["branch_id"].iloc[0])
    tokens = [
        f"{_token(A, 'marketing')}:marketing:{A}",
        f"{_token(A, 'branch')}:branch:{A}:{branch}",
        f"{_token(B, 'admin')}:admin:{B}",
        f"{FED_ADMIN}:federation_admin",
    ]
    try:  # the session's single-bank service (conftest.client), if started: restored afterwards
        before = bentoml.get_current_service()
    except BentoMLException:
        before = None
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBP_HOME", str(fed.ws.home))
        mp.setenv("NBP_TOKENS", ",".join(tokens))
        mp.setenv("BENTOML_HOME", str(fed.ws.bentoml_home))
        mp.delenv("NBP_CONFIG", raising=False)
        try:
            with TestClient(NbpService.to_asgi(), raise_server_exceptions=False) as c:
                mp.undo()
                yield c
        finally:
            set_current_service(before)


def _post(client: Any, token: str, **body: Any) -> Any:
    return client.post("/segments", json=body, headers={"Authorization": f"Bearer {token}"})


def _ids(ws: Workspace) -> set[str]:
    return set(pd.read_parquet(ws.table("customers"))["customer_id"].astype(str))


def test_service_answers_the_tokens_bank_only(fed: Fed, client: Any) -> None:
    everyone = "branch_id is not null or branch_id is null"
    r = _post(client, _token(A, "marketing"), where=everyone, top=1000)
    assert r.status_code == 200, r.text
    body = r.json()
    want = run_segment(fed.cfg, fed.bank(A), everyone)
    assert body["bank_code"] == A and body["count"] == want.count == len(body["rows"])
    assert {row["customer_id"] for row in body["rows"]} == set(want.customers["customer_id"]) <= _ids(fed.bank(A))
    assert sum(b["customers"] for b in body["breakdown"]) == body["count"]
    assert body["columns"]["customer_id"] == "客户号"

    r = _post(client, FED_ADMIN, where=everyone, top=1000, bank_code=B)
    assert r.status_code == 200, r.text
    rows_b = {row["customer_id"]: row for row in r.json()["rows"]}
    assert set(rows_b) == set(run_segment(fed.cfg, fed.bank(B), everyone).customers["customer_id"])
    only_a = _ids(fed.bank(A)) - _ids(fed.bank(B))
    assert only_a and not (only_a & set(rows_b))  # bank A's own customers never in bank B's answer
    assert rows_b[next(iter(rows_b))]["customer_id"]

    r = _post(client, _token(B, "admin"), where="score_consumer > 0.5")  # B has no scores: its own data only
    assert r.status_code == 503 and "no batch scores" in r.json()["error"]


def test_service_refuses_other_banks_branch_tokens_and_bad_filters(fed: Fed, client: Any) -> None:
    r = _post(client, _token(A, "marketing"), where="tier_level == 0", bank_code=B)
    assert r.status_code == 403
    r = _post(client, _token(A, "branch"), where="tier_level == 0")
    assert r.status_code == 403 and "role 'branch'" in r.json()["error"]
    r = _post(client, _token(A, "marketing"), where="demo_ocupation == 1")
    assert r.status_code == 422 and "did you mean demo_occupation" in r.json()["error"]
    r = _post(client, _token(A, "marketing"), where="1; DROP TABLE customers")
    assert r.status_code == 422 and "unexpected character ';'" in r.json()["error"]
    r = _post(client, _token(A, "marketing"), where="tier_level == 0", name="payroll_public_no_consumer")
    assert r.status_code == 422
    r = _post(client, _token(A, "marketing"), where="tier_level == 0", as_of="2026-13-01")
    assert r.status_code == 422
    r = _post(client, _token(A, "marketing"), where="tier_level == 0", top=5000)
    assert r.status_code == 422
    r = _post(client, FED_ADMIN, where="tier_level == 0")
    assert r.status_code == 422  # a federation_admin names the bank


def test_service_saves_a_segment_for_the_tokens_bank(fed: Fed, client: Any) -> None:
    body = {"where": "tier_level <= 1", "as_of": fed.as_ofs[-2].isoformat(), "save_as": "svc_saved", "top": 3}
    r = _post(client, _token(A, "marketing"), **body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["saved"] and out["name"] == "svc_saved" and len(out["rows"]) == min(3, out["count"])
    record = yaml.safe_load((fed.bank(A).segments_dir / "svc_saved.yaml").read_text(encoding="utf-8"))
    assert record["created_by"].startswith("marketing:") and _token(A, "marketing") not in json.dumps(record)
    again = _post(client, _token(A, "marketing"), name="svc_saved").json()
    assert again["as_of"] == body["as_of"] and again["count"] == out["count"]
    assert _post(client, _token(B, "admin"), name="svc_saved").status_code == 422  # bank A's, not B's


def test_the_route_is_described_in_the_openapi_document(client: Any) -> None:
    post = client.get("/docs.json").json()["paths"]["/segments"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("SegmentsRequest")
    assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("SegmentsResponse")
    headers = {"Authorization": f"Bearer {_token(A, 'marketing')}"}
    assert client.get("/segments", headers=headers).status_code == 405
    assert client.post("/segments", json={"where": "tier_level == 0"}).status_code == 401


def test_a_single_bank_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from bankexport.ingest import ingest
    from bankexport.simulate import simulate
    from features.build import build
    from nbp.cli import main

    ws, cfg = Workspace(tmp_path / "home"), load_config()
    simulate(tmp_path / "bank", customers=300, months=6, end="2026-10", seed=11)
    ingest(tmp_path / "bank" / "export", ws, cfg.ingest)
    build(ws, cfg=cfg)
    monkeypatch.setenv("NBP_HOME", str(ws.home))
    res = CliRunner().invoke(main, ["segment", "--where", "tier_level <= 1 or demo_age_years >= 50", "--save", "s1"])
    assert res.exit_code == 0, res.output
    got = run_segment(cfg, ws, name="s1")
    assert f"\nsegment s1 at {got.as_of:%Y-%m-%d}: {got.count:,} customers" in res.output  # no bank prefix
    assert (ws.segments_dir / "s1.yaml").exists() and ws.segments_dir == ws.home / "segments"
    assert list(ws.segment_outputs_dir.glob("s1_*.xlsx"))
    res = CliRunner().invoke(main, ["segment", "--bank", "X", "--where", "tier_level == 0"])
    assert res.exit_code == 1 and "single-bank workspace" in res.output


def test_service_sends_the_whole_segment_as_a_workbook(fed: Fed, client: Any) -> None:
    import io
    from urllib.parse import unquote

    from openpyxl import load_workbook

    r = _post(client, _token(A, "marketing"), name="payroll_public_no_consumer", format="xlsx", top=0)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    assert r.headers["x-content-type-options"] == "nosniff"
    got = run_segment(fed.cfg, fed.bank(A), name="payroll_public_no_consumer")
    name = unquote(r.headers["content-disposition"].split("filename*=UTF-8''")[1])
    assert name == f"payroll_public_no_consumer_{got.as_of:%Y-%m-%d}.xlsx"
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["概要", "按支行和层级", "客户清单"]
    assert wb["客户清单"].max_row == got.count + 1  # every customer, whatever top says
    assert not list(fed.bank(A).segment_outputs_dir.glob(".*"))  # nothing left behind
