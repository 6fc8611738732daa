"""Every export shape the spec allows runs the chain: optional tables absent, typed Parquet.

One small simulated bank (tests/e2e/conftest.py), reshaped per test: with every optional
table absent and with typed Parquet tables, the whole chain (ingest, features, train, score,
target lists, the service's readiness and hints); with each optional table absent alone,
ingest, features and train. A product that cannot be fitted is skipped with its reason,
which every surface shows; the other products train.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from e2ekit import run_cli

from bankexport.spec import OPTIONAL_TABLES, TABLES
from features.catalog import MODULES
from nbp.config import load_config
from nbp.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AS_OF = "2026-11-01"  # the day after the small bank's export date


def reshape(src: Path, dst: Path, drop: tuple[str, ...] = (), typed: bool = False) -> Path:
    """A copy of the export without the tables ``drop``; ``typed``: every Parquet column retyped as
    another bank's warehouse might write it (dates as timestamp[ms], timestamps in ns, money as
    decimal128(18, 2), integers as int32, months as date32, ids as large_string, enums
    dictionary-encoded)."""
    shutil.copytree(src, dst)
    for t in drop:
        for p in dst.glob(f"{t}.*"):
            p.unlink()
    if not typed:
        return dst
    for path in dst.glob("*.parquet"):
        spec = TABLES[path.stem]
        table = pq.read_table(path)
        cols = []
        for name, col in zip(table.column_names, table.columns, strict=True):
            kind = spec.column(name).type
            if kind == "date":
                col = col.cast(pa.timestamp("ms"))
            elif kind == "timestamp":
                col = col.cast(pa.timestamp("ns"))
            elif kind == "money":
                col = col.cast(pa.decimal128(18, 2))
            elif kind == "int":
                col = col.cast(pa.int32())
            elif kind == "month":
                col = pc.strptime(col, format="%Y-%m", unit="s").cast(pa.date32())
            elif kind == "enum":
                col = col.dictionary_encode()
            else:
                col = col.cast(pa.large_string())
            cols.append(col)
        pq.write_table(pa.table(cols, names=table.column_names), path)
    return dst


def train_skips(out: str) -> dict[str, str]:
    """product -> the skip line `nbp train` printed."""
    return {m[1]: line for line in out.splitlines() if (m := re.match(r"([a-z_]+): skipped: ", line))}


def trained(out: str) -> set[str]:
    """Products `nbp train` registered a version of (table rows with a version number)."""
    return {
        cells[1]
        for line in out.splitlines()
        if line.startswith("| ") and len(cells := [c.strip() for c in line.split("|")]) > 3 and cells[2].isdigit()
    }


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("NBP_HOME", str(h))
    return h


def test_every_optional_table_absent_runs_the_whole_chain(small_export: Path, tmp_path: Path, home: Path) -> None:
    export = reshape(small_export, tmp_path / "export", drop=OPTIONAL_TABLES)
    assert not [p for p in export.iterdir() if p.stem in OPTIONAL_TABLES]
    run_cli(["ingest", str(export)])
    run_cli(["features"])
    build = json.loads(Workspace(home).features_build_meta.read_text(encoding="utf-8"))
    assert set(build["null_families"]) == {f for f, m in MODULES.items() if set(m.REQUIRES) & set(OPTIONAL_TABLES)}
    out = run_cli(["train"])
    # tax_linked's eligibility reads the tax grade, unknown without tax_records: skipped, saying why
    skips = train_skips(out)
    assert "tax_linked" in skips and "tax_records" in skips["tax_linked"] and "无候选客户" in skips["tax_linked"]
    fitted = trained(out)
    assert fitted and "tax_linked" not in fitted and fitted | set(skips) == set(load_config().products)
    assert "| champion |" in out, out

    scores = Workspace(home).latest_scores
    run_cli(["score", "--as-of", AS_OF, "--out", str(scores)])
    s = pd.read_parquet(scores)
    assert len(s) and set(s["product"]) <= fitted and s["score"].between(0, 1).all()
    champion = sorted(set(s["product"]))[0]
    assert "customers to contact" in run_cli(
        ["targets", "--product", champion, "--top", "20", "--out", str(tmp_path / "list.xlsx")]
    )
    refused = run_cli(["targets", "--product", "tax_linked", "--top", "20", "--out", str(tmp_path / "no.xlsx")], 1)
    assert "tax_records" in refused and "模型暂不可用" in refused and not (tmp_path / "no.xlsx").exists()

    # MLflow: a run tagged with the reason, and the same tags on the registered model
    from training import registry

    ws = Workspace.from_env()
    client = registry._connect(ws)
    exp = client.get_experiment_by_name("nbp-tax_linked")
    runs = client.search_runs([exp.experiment_id], "tags.`nbp.skipped` != ''")
    assert len(runs) == 1 and "tax_records" in runs[0].data.tags["nbp.skipped_zh"]
    assert registry.skip_of(ws, "tax_linked")["zh"] == runs[0].data.tags["nbp.skipped_zh"]

    # the service: /readyz (admin) gives the reason, the public one a code; the staff page's hint says why
    from serving.engine import Recommender

    rec = Recommender.load(load_config(), ws)
    ready = rec.readiness()["products"]["tax_linked"]
    assert not ready["ready"] and "tax_records" in ready["skipped"]["en"] and "tax_records" in ready["skipped"]["zh"]
    assert rec.public_readiness()["products"]["tax_linked"]["status"] == "skipped"
    hint = {r.product: r for r in rec.hints(str(s["customer_id"].iloc[0]), "zh").products}
    assert hint["tax_linked"].reason_not_offered.startswith("模型暂不可用：")
    assert "tax_records" in hint["tax_linked"].reason_not_offered
    assert hint[champion].propensity is not None


def test_typed_parquet_export_runs_the_whole_chain(
    small_export: Path, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    typed = reshape(small_export, tmp_path / "typed", typed=True)
    assert pq.read_schema(typed / "balances.parquet").field("month").type == pa.date32()
    assert pq.read_schema(typed / "loans.parquet").field("amount").type == pa.decimal128(18, 2)
    run_cli(["ingest", str(typed)])
    report = json.loads(Workspace(home).ingest_report.read_text(encoding="utf-8"))
    for table, r in report["tables"].items():
        assert r["rows_kept"] == r["rows_read"], (table, r)
    # the same typed tables as the simulator's own Parquet gives
    plain_home = tmp_path / "plain"
    monkeypatch.setenv("NBP_HOME", str(plain_home))
    run_cli(["ingest", str(small_export)])
    monkeypatch.setenv("NBP_HOME", str(home))
    for table in report["tables"]:
        pd.testing.assert_frame_equal(
            pd.read_parquet(Workspace(home).table(table)),
            pd.read_parquet(Workspace(plain_home).table(table)),
        )
    out = run_cli(["retrain"])
    assert "| champion |" in out
    s = pd.read_parquet(Workspace(home).latest_scores)
    assert len(s) and s["score"].between(0, 1).all()
    product = sorted(set(s["product"]))[0]
    assert "customers to contact" in run_cli(
        ["targets", "--product", product, "--top", "20", "--out", str(tmp_path / "list.csv")]
    )


@pytest.mark.parametrize("table", OPTIONAL_TABLES)
def test_each_optional_table_absent_alone_trains(small_export: Path, tmp_path: Path, home: Path, table: str) -> None:
    export = reshape(small_export, tmp_path / "export", drop=(table,))
    run_cli(["ingest", str(export)])
    run_cli(["features"])
    build = json.loads(Workspace(home).features_build_meta.read_text(encoding="utf-8"))
    assert set(build["null_families"]) == {f for f, m in MODULES.items() if table in m.REQUIRES}
    out = run_cli(["train"])
    fitted, skips = trained(out), train_skips(out)
    assert fitted and fitted | set(skips) == set(load_config().products), out
    if table == "tax_records":
        assert "tax_records" in skips["tax_linked"]
