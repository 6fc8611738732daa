"""Data-quality figures: which fields are known, for whom they apply, and the history per export date."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bankexport import quality
from bankexport.ingest import ingest
from bankexport.spec import EDUCATION, INDUSTRIES, OCCUPATIONS, PROFILE_MONEY_FIELDS, TABLES
from nbp.config import IngestConfig, load_config
from nbp.errors import ConfigError
from nbp.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bankexport.conftest import bank_manifest, base_tables, write_export

MANIFEST = {"format": "bank-export/1", "export_date": "2024-05-31"}
FIELDS = list(quality.FIELD_RULES)


def _ingest(tmp_path: Path, ws: Workspace, cfg: IngestConfig, tables: dict, export_date: str = "2024-05-31") -> None:
    src = write_export(tmp_path / f"exp-{export_date}", tables, manifest={**MANIFEST, "export_date": export_date})
    ingest(src, ws, cfg)


def _row(df: pd.DataFrame, cid: str) -> pd.Series:
    return df.set_index("customer_id").loc[cid]


def test_fields_apply_by_customer_type_and_occupation(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    tables = base_tables()
    # C1 is a farmer in ECIF; a visit before the export date records that they now run a small business
    tables["profile_updates"].append(
        {"customer_id": "C1", "field": "occupation", "value": "micro_business_owner", "collected_date": "2024-05-02"}
    )
    _ingest(tmp_path, ws, cfg, tables)
    df = quality.customer_completeness(ws, FIELDS)
    assert list(df["customer_id"]) == ["C1", "C2", "C3"]
    assert list(df.columns[:4]) == quality.ID_COLUMNS
    c1, c2, c3 = (_row(df, c) for c in ("C1", "C2", "C3"))
    # the business C2: no personal fields, but industry and a tax grade
    assert pd.isna(c2["known_marital_status"]) and pd.isna(c2["known_occupation"]) and pd.isna(c2["known_gender"])
    assert c2["known_industry"] and c2["known_tax_credit_grade"] and not c2["known_business_turnover_monthly"]
    # the merchant C3: personal fields and business fields, and a tax grade (missing here)
    assert c3["known_occupation"] and c3["known_education"]
    assert not c3["known_industry"] and not c3["known_tax_credit_grade"] and not c3["known_birth_date"]
    # C1, now a micro-business owner: business fields apply, the tax grade does not (not a merchant)
    assert not c1["known_industry"] and not c1["known_established_date"]
    assert pd.isna(c1["known_tax_credit_grade"])
    # everyone: residence, risk tolerance, manager
    assert c1["known_manager_id"] and not c2["known_manager_id"] and not c3["known_residence"]
    assert quality.missing_fields(ws, ["industry", "marital_status", "tax_credit_grade"], ["C1", "C2", "C404"]) == {
        "C1": ["industry", "marital_status"],
        "C2": [],
    }


def test_updates_and_tax_records_count_only_before_as_of(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    _ingest(tmp_path, ws, cfg, base_tables())
    f = ["monthly_income", "education", "tax_credit_grade"]
    # C1's monthly_income was collected on 2024-04-10, C3's education on 2024-04-12 (C3 has none in
    # customers), C2's tax record published on 2024-03-01
    on = quality.customer_completeness(ws, f, as_of=date(2024, 4, 10))
    assert not _row(on, "C1")["known_monthly_income"]
    assert _row(quality.customer_completeness(ws, f, as_of=date(2024, 4, 11)), "C1")["known_monthly_income"]
    assert not _row(quality.customer_completeness(ws, f, as_of=date(2024, 4, 12)), "C3")["known_education"]
    assert _row(quality.customer_completeness(ws, f, as_of=date(2024, 4, 13)), "C3")["known_education"]
    assert not _row(quality.customer_completeness(ws, f, as_of=date(2024, 3, 1)), "C2")["known_tax_credit_grade"]
    assert _row(quality.customer_completeness(ws, f, as_of=date(2024, 3, 2)), "C2")["known_tax_credit_grade"]
    # a customer opened on or after as_of is not counted at all
    assert list(quality.customer_completeness(ws, f, as_of=date(2020, 1, 15))["customer_id"]) == ["C1", "C2"]
    # the default as_of is the day after the export date: everything in the export counts
    assert quality.customer_completeness(ws, f)["known_monthly_income"].iloc[0]


def test_without_the_optional_tables_fields_count_from_customers(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig
) -> None:
    tables = base_tables()
    del tables["profile_updates"], tables["tax_records"]
    _ingest(tmp_path, ws, cfg, tables)
    df = quality.customer_completeness(ws, ["education", "monthly_income", "tax_credit_grade", "industry"])
    c2, c3 = _row(df, "C2"), _row(df, "C3")
    assert not c3["known_education"] and not c3["known_monthly_income"] and not c2["known_tax_credit_grade"]
    assert c2["known_industry"]


def test_an_unknown_field_names_the_known_ones(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    with pytest.raises(ConfigError, match="annual_income.*known: occupation"):
        quality.checked_fields(["occupation", "annual_income"])


def test_history_keeps_each_export_date(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    tables = base_tables()
    _ingest(tmp_path, ws, cfg, tables, "2024-05-31")
    # a month on: the manager records C3's birth date in ECIF, and one transaction breaks a rule
    tables["customers"][2]["birth_date"] = "1990-02-03"
    tables["transactions"][0]["amount"] = "0"
    _ingest(tmp_path, ws, cfg, tables, "2024-06-30")
    hist = quality.read_history(ws)
    assert sorted(p.name for p in ws.quality_dir.iterdir()) == ["2024-05-31.parquet", "2024-06-30.parquet"]
    birth = hist[(hist["kind"] == "field") & (hist["field"] == "birth_date") & (hist["branch_id"] == "B2")]
    assert list(birth["export_date"].dt.date.astype(str)) == ["2024-05-31", "2024-06-30"]
    assert list(birth["known"]) == [0, 1] and list(birth["applicable"]) == [1, 1]
    aside = hist[(hist["kind"] == "set_aside") & (hist["table"] == "transactions")]
    assert aside.groupby(aside["export_date"].dt.day)["rows"].sum().to_dict() == {31: 0, 30: 1}
    assert aside["rule"].dropna().tolist() == ["non_positive"]

    # a re-import of the first date replaces that file only
    before = (ws.quality_dir / "2024-06-30.parquet").read_bytes()
    _ingest(tmp_path, ws, cfg, tables, "2024-05-31")
    hist = quality.read_history(ws)
    again = hist[(hist["kind"] == "field") & (hist["field"] == "birth_date") & (hist["branch_id"] == "B2")]
    assert list(again["known"]) == [1, 1]
    assert (ws.quality_dir / "2024-06-30.parquet").read_bytes() == before


def _random_export(n: int, seed: int) -> dict[str, list[dict[str, str]]]:
    rng = np.random.default_rng(seed)
    tables = base_tables()

    def maybe(v: str) -> str | None:
        return v if rng.random() < 0.6 else None

    customers = []
    for i in range(n):
        kind = "business" if rng.random() < 0.25 else "individual"
        customers.append(
            {
                "customer_id": f"R{i}",
                "customer_type": kind,
                "occupation": maybe(str(rng.choice(OCCUPATIONS))) if kind == "individual" else None,
                "education": maybe(str(rng.choice(EDUCATION))),
                "industry": maybe(str(rng.choice(INDUSTRIES))),
                "birth_date": maybe("1985-01-01"),
                "branch_id": f"B{rng.integers(1, 4)}",
                "manager_id": maybe(f"M{rng.integers(1, 4)}"),
                "open_date": f"20{rng.integers(10, 25)}-03-01",
            }
        )
    tables["customers"] += [{k: v for k, v in c.items() if v is not None} for c in customers]
    fields = ["occupation", "education", "industry", "monthly_income", "business_turnover_monthly"]
    values = {"occupation": "merchant", "education": "college", "industry": "A"}
    for _ in range(n):
        f = str(rng.choice(fields))
        tables["profile_updates"].append(
            {
                "customer_id": f"R{rng.integers(n)}",
                "field": f,
                "value": values.get(f, "3000"),
                "collected_date": f"2024-0{rng.integers(1, 6)}-{rng.integers(1, 29):02d}",
            }
        )
    for i in rng.choice(n, n // 3, replace=False):
        tables["tax_records"].append(
            {
                "customer_id": f"R{i}",
                "tax_year": "2023",
                "credit_grade": str(rng.choice(["A", "B", ""])),
                "published_date": f"2024-0{rng.integers(1, 6)}-15",
            }
        )
    return tables


def _pandas_counts(tables: dict, as_of: pd.Timestamp, fields: list[str]) -> pd.DataFrame:
    """The same figures counted directly on the export's rows."""
    base = ["customer_id", "customer_type", "occupation", "branch_id", "manager_id", "open_date"]
    c = pd.DataFrame(tables["customers"]).reindex(columns=list(dict.fromkeys([*base, *fields])))
    c = c[pd.to_datetime(c["open_date"]) < as_of]
    u = pd.DataFrame(tables["profile_updates"])
    u = u[pd.to_datetime(u["collected_date"]) < as_of].sort_values("collected_date", kind="stable")
    occ = u[u["field"] == "occupation"].groupby("customer_id")["value"].last()
    c["occupation"] = c["customer_id"].map(occ).fillna(c["occupation"])
    t = pd.DataFrame(tables["tax_records"])
    graded = set(t[(pd.to_datetime(t["published_date"]) < as_of) & t["credit_grade"].fillna("").ne("")]["customer_id"])
    biz = c["customer_type"].eq("business") | c["occupation"].isin(["merchant", "micro_business_owner"])
    applies = {
        "individual": c["customer_type"].eq("individual"),
        "business": biz,
        "taxpayer": c["customer_type"].eq("business") | c["occupation"].eq("merchant"),
    }
    rows = []
    for f in fields:
        rule = quality.FIELD_RULES[f]
        updated = c["customer_id"].isin(set(u[u["field"] == f]["customer_id"]))
        if rule.source == "tax_records":
            known = c["customer_id"].isin(graded)
        elif rule.source == "profile_updates":
            known = updated
        else:
            known = c[f].notna() | updated
        a = applies.get(rule.applies, pd.Series(True, index=c.index))
        g = pd.DataFrame({"branch_id": c["branch_id"], "manager_id": c["manager_id"], "a": a, "k": known & a})
        for (b, m), grp in g.groupby(["branch_id", "manager_id"], dropna=False):
            if grp["a"].sum():
                rows.append((b, None if pd.isna(m) else m, f, int(grp["a"].sum()), int(grp["k"].sum())))
    return pd.DataFrame(rows, columns=["branch_id", "manager_id", "field", "applicable", "known"])


def test_snapshot_equals_an_independent_count(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    tables = _random_export(400, seed=3)
    _ingest(tmp_path, ws, cfg, tables)
    fields = ["occupation", "education", "industry", "birth_date", "monthly_income", "tax_credit_grade", "manager_id"]
    snap = pd.read_parquet(ws.quality_dir / "2024-05-31.parquet")
    got = snap[(snap["kind"] == "field") & snap["field"].isin(fields)]
    got = got[["branch_id", "manager_id", "field", "applicable", "known"]].astype(object)
    got = got.where(got.notna(), None)
    want = _pandas_counts(tables, pd.Timestamp("2024-06-01"), fields)
    key = ["branch_id", "manager_id", "field"]
    got = got.sort_values(key, key=lambda s: s.astype(str)).reset_index(drop=True)
    want = want.sort_values(key, key=lambda s: s.astype(str)).reset_index(drop=True)
    assert len(want) > 30
    pd.testing.assert_frame_equal(got.astype(str), want.astype(str))
    share = snap[snap["kind"] == "field"]
    assert np.allclose(share["completeness"], share["known"] / share["applicable"])


def test_config_fields_are_all_known_to_the_rules() -> None:
    assert quality.checked_fields(load_config().quality.fields) == load_config().quality.fields


def test_a_member_bank_keeps_its_own_history(tmp_path: Path, cfg: IngestConfig) -> None:
    home = Workspace(tmp_path / "fed")
    for code in ("B01", "B02"):
        src = write_export(tmp_path / code, base_tables(), manifest=bank_manifest(code, export_date="2024-05-31"))
        ingest(src, home, cfg)
    for code in ("B01", "B02"):
        hist = quality.read_history(home.for_bank(code))
        assert set(hist["bank_code"]) == {code} and len(hist[hist["kind"] == "field"]) > 0
    assert not home.quality_dir.exists()  # nothing at the federation's own root


def test_every_rule_reads_a_column_the_spec_has() -> None:
    customers = set(TABLES["customers"].column_names)
    for f, r in quality.FIELD_RULES.items():
        assert {
            quality.CUSTOMERS: f in customers,
            quality.PROFILE: f in PROFILE_MONEY_FIELDS,
            quality.TAX: f == "tax_credit_grade" and "credit_grade" in TABLES["tax_records"].column_names,
        }[r.source], f
        assert r.applies in quality.APPLIES_ZH
    assert set(quality.BUSINESS_OCCUPATIONS + quality.TAXPAYER_OCCUPATIONS) <= set(OCCUPATIONS)
