"""A family's table as files of whole as-of dates (``features/tables.py``): a rebuild touches only
the files holding the dates it rebuilds, every date stays in exactly one file, and the
point-in-time join names a row across files."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from features import offline
from features import tables as ft
from features.schema import EVENT_TS, JOIN_KEY
from nbp.errors import FeatureStoreError
from nbp.sqltext import lit
from nbp.workspace import Workspace

OPTIONS = "FORMAT parquet"
COLUMNS = [JOIN_KEY, EVENT_TS, "x"]
D = [date(2025, m, 1) for m in (1, 2, 3, 4)]


def _rows(con: duckdb.DuckDBPyConnection, dates: list[date], x: float) -> str:
    """A query of two customers' rows at ``dates``, feature ``x`` = ``x`` + the month."""
    con.register("src", pd.DataFrame({"d": pd.to_datetime(dates)}))
    frame = con.sql(
        f"SELECT c AS {JOIN_KEY}, CAST(d AS TIMESTAMP) AS {EVENT_TS}, {x} + month(d) AS x "
        f"FROM src, (VALUES ('a'), ('b')) v(c)"
    ).df()
    name = f"q{abs(hash((tuple(dates), x)))}"
    con.register(name, frame)
    return f"SELECT * FROM {name}"


def _table(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder).sort_values([EVENT_TS, JOIN_KEY], ignore_index=True)


def _stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in ft.files(folder)}


def test_a_rebuild_moves_its_dates_to_one_new_file_and_leaves_the_other_files_alone(tmp_path: Path) -> None:
    con, folder = duckdb.connect(), tmp_path / "fam"
    ft.replace_dates(con, folder, _rows(con, D[:3], 0), D[:3], COLUMNS, OPTIONS)
    assert [p.name for p in ft.files(folder)] == ["2025-01-01_2025-03-01.parquet"]
    ft.replace_dates(con, folder, _rows(con, [D[3]], 0), [D[3]], COLUMNS, OPTIONS)  # a new month
    before = _stamps(folder)
    assert list(before) == ["2025-01-01_2025-03-01.parquet", "2025-04-01.parquet"]
    # a restated old month: its holder loses it (renamed by what it keeps), the new month's file is untouched
    n, dropped = ft.replace_dates(con, folder, _rows(con, [D[0]], 100), [D[0]], COLUMNS, OPTIONS)
    assert (n, dropped) == (2, False)
    after = _stamps(folder)
    assert list(after) == ["2025-01-01.parquet", "2025-02-01_2025-03-01.parquet", "2025-04-01.parquet"]
    assert after["2025-04-01.parquet"] == before["2025-04-01.parquet"]
    got = _table(folder)
    assert got.groupby(EVENT_TS).size().tolist() == [2, 2, 2, 2]  # every date once
    assert got["x"].tolist() == [101.0, 101.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]
    # a middle date: the holder keeps its name (first and last unchanged)
    ft.replace_dates(con, folder, _rows(con, [D[1]], 200), [D[1]], COLUMNS, OPTIONS)
    names = [p.name for p in ft.files(folder)]
    assert names == ["2025-01-01.parquet", "2025-02-01.parquet", "2025-03-01.parquet", "2025-04-01.parquet"]
    # rebuilding the first and last dates together: one file named like no other
    ft.replace_dates(con, folder, _rows(con, [D[0], D[3]], 300), [D[0], D[3]], COLUMNS, OPTIONS)
    names = [p.name for p in ft.files(folder)]
    assert names == ["2025-01-01_2025-04-01.parquet", "2025-02-01.parquet", "2025-03-01.parquet"]
    assert _table(folder)["x"].tolist() == [301.0, 301.0, 202.0, 202.0, 3.0, 3.0, 304.0, 304.0]


def test_a_failed_check_or_stray_dates_leave_the_table_as_it_was(tmp_path: Path) -> None:
    con, folder = duckdb.connect(), tmp_path / "fam"
    ft.replace_dates(con, folder, _rows(con, D[:2], 0), D[:2], COLUMNS, OPTIONS)
    before, table = _stamps(folder), _table(folder)

    def refuse(n: int) -> None:
        raise FeatureStoreError(f"{n} rows")

    with pytest.raises(FeatureStoreError, match="2 rows"):
        ft.replace_dates(con, folder, _rows(con, [D[0]], 9), [D[0]], COLUMNS, OPTIONS, check=refuse)
    with pytest.raises(FeatureStoreError, match="as-of dates not being built"):
        ft.replace_dates(con, folder, _rows(con, D[:2], 9), [D[0]], COLUMNS, OPTIONS)
    assert _stamps(folder) == before and sorted(p.name for p in folder.iterdir()) == list(before)  # no temp file
    pd.testing.assert_frame_equal(_table(folder), table)
    empty = tmp_path / "new"
    with pytest.raises(FeatureStoreError):
        ft.replace_dates(con, empty, _rows(con, [D[0]], 0), [D[0]], COLUMNS, OPTIONS, check=refuse)
    assert not empty.exists()  # a failed first build leaves no folder


def test_changed_columns_drop_the_older_dates(tmp_path: Path) -> None:
    con, folder = duckdb.connect(), tmp_path / "fam"
    ft.replace_dates(con, folder, _rows(con, D[:2], 0), D[:2], COLUMNS, OPTIONS)
    query = f"SELECT *, 1 AS y FROM ({_rows(con, [D[2]], 0)})"
    before = _stamps(folder)

    def refuse(n: int) -> None:
        raise FeatureStoreError(f"{n} rows")

    with pytest.raises(FeatureStoreError):  # a refused build keeps the older dates, columns changed or not
        ft.replace_dates(con, folder, query, [D[2]], [*COLUMNS, "y"], OPTIONS, check=refuse)
    assert _stamps(folder) == before
    n, dropped = ft.replace_dates(con, folder, query, [D[2]], [*COLUMNS, "y"], OPTIONS)
    assert (n, dropped) == (2, True)
    assert [p.name for p in ft.files(folder)] == ["2025-03-01.parquet"]


def test_a_kept_file_of_another_bank_is_refused(tmp_path: Path) -> None:
    con, folder = duckdb.connect(), tmp_path / "B" / "fam"
    cols = ["bank_code", *COLUMNS]
    ft.replace_dates(con, folder, f"SELECT 'A' AS bank_code, * FROM ({_rows(con, [D[0]], 0)})", [D[0]], cols, OPTIONS)
    with pytest.raises(FeatureStoreError, match="rows of bank_code 'A' in the folder of bank B"):
        q = f"SELECT 'B' AS bank_code, * FROM ({_rows(con, [D[1]], 0)})"
        ft.replace_dates(con, folder, q, [D[1]], cols, OPTIONS, bank="B")


class _View:
    """What ``point_in_time_sql`` reads of a feature view."""

    def __init__(self, path: str) -> None:
        self.path, self.ts, self.keys = path, EVENT_TS, [(JOIN_KEY, JOIN_KEY)]
        self.features, self.out, self.ttl = ["x"], ["x"], timedelta(days=45)


@pytest.mark.parametrize("exact_first", [True, False])
def test_the_point_in_time_join_names_rows_across_files(tmp_path: Path, exact_first: bool) -> None:
    # two files whose rows share positions (row 0, row 1): the join must fetch the matched file's row
    con, folder = duckdb.connect(), tmp_path / "fam"
    ft.replace_dates(con, folder, _rows(con, [D[0]], 0), [D[0]], COLUMNS, OPTIONS)
    ft.replace_dates(con, folder, _rows(con, [D[1]], 10), [D[1]], COLUMNS, OPTIONS)
    assert len(ft.files(folder)) == 2
    when = [datetime(2025, 2, 10), datetime(2025, 1, 20), datetime(2025, 2, 1), datetime(2024, 12, 1)]
    con.register(
        "ent", pd.DataFrame({offline._ROW: range(4), JOIN_KEY: ["a", "b", "b", "a"], EVENT_TS: pd.to_datetime(when)})
    )
    view = _View(str(folder / "*.parquet"))
    sql = offline.point_in_time_sql([view], "ent", EVENT_TS, ["TIMESTAMP"], exact_first=exact_first)
    got = con.sql(f"{sql} ORDER BY 1").df()
    assert got["x"].tolist()[:3] == [12.0, 1.0, 12.0] and pd.isna(got["x"].iloc[3])
    n = con.sql(f"SELECT count(*) FROM read_parquet({lit(view.path)})").fetchall()[0][0]
    assert n == 4


def test_a_workspace_of_one_file_per_family_is_cleared_for_a_full_build(tmp_path: Path) -> None:
    feats = tmp_path / "features"
    feats.mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(feats / "demo.parquet")
    (feats / "spend").mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(feats / "spend" / "2025-01-01.parquet")
    assert [p.name for p in ft.drop_legacy(feats)] == ["demo.parquet"]
    assert sorted(p.name for p in feats.iterdir()) == ["spend"]


def test_a_build_killed_while_replacing_dates_is_completed_by_the_next(
    tiny_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an explicit rebuild of two built dates whose inputs did not change, killed after the first
    # family's holder lost them and before their new file was renamed in: the next build writes them
    from features.build import build, built_as_of

    build(tiny_ws)
    want = {fam: _table(tiny_ws.feature_table(fam)) for fam in ("demo", "income", "tier")}
    again = built_as_of(tiny_ws)[1:3]
    real = os.replace

    def killed(src: object, dst: object) -> None:
        if Path(dst).name == ft.file_name(again):
            raise KeyboardInterrupt("killed")
        real(src, dst)

    monkeypatch.setattr(ft.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        build(tiny_ws, again)
    monkeypatch.setattr(ft.os, "replace", real)
    lost = [fam for fam in want if len(_table(tiny_ws.feature_table(fam))) < len(want[fam])]
    assert lost, "the kill came after every table was whole again"
    build(tiny_ws)
    for fam, table in want.items():
        pd.testing.assert_frame_equal(_table(tiny_ws.feature_table(fam)), table, check_exact=True, obj=fam)


def test_merge_puts_every_row_in_one_file_in_its_files_order_after_forgetting_its_dates(tmp_path: Path) -> None:
    con, folder = duckdb.connect(), tmp_path / "fam"
    ft.replace_dates(con, folder, _rows(con, D[:3], 0), D[:3], COLUMNS, OPTIONS)
    ft.replace_dates(con, folder, _rows(con, [D[3]], 0), [D[3]], COLUMNS, OPTIONS)
    ft.replace_dates(con, folder, _rows(con, [D[1]], 100), [D[1]], COLUMNS, OPTIONS)  # a restated middle month
    assert len(ft.files(folder)) == 3
    table = _table(folder)
    seen: list[tuple[list[date], int]] = []
    n = ft.merge(con, folder, OPTIONS, lambda dates: seen.append((dates, len(ft.files(folder)))))
    assert n == 3
    assert seen == [(D, 3)]  # told every date while all the old files were still there
    assert [p.name for p in ft.files(folder)] == ["2025-01-01_2025-04-01.parquet"]
    pd.testing.assert_frame_equal(_table(folder), table, check_exact=True)
    stored = pd.read_parquet(ft.files(folder)[0])[EVENT_TS].dt.date.tolist()
    # files in order of their first date, each file's rows as they were: the latest month last
    assert stored[4:] == [D[1], D[1], D[3], D[3]] and sorted(stored[:4]) == [D[0], D[0], D[2], D[2]]
    assert ft.merge(con, folder, OPTIONS, lambda dates: seen.append((dates, 0))) == 0  # one file: nothing to do
    assert len(seen) == 1


@pytest.mark.parametrize("kill_at", ["removal", "rename"])
def test_a_build_merges_a_table_of_more_files_than_the_limit_and_keeps_its_record(
    tiny_ws: Workspace, monkeypatch: pytest.MonkeyPatch, kill_at: str
) -> None:
    from features.build import build, built_as_of
    from nbp.config import load_config

    base = load_config()
    cfg = base.model_copy(update={"features": base.features.model_copy(update={"max_table_files": 2})})
    build(tiny_ws, cfg=cfg)
    want = {fam: _table(tiny_ws.feature_table(fam)) for fam in ("demo", "income", "tier")}
    dates = built_as_of(tiny_ws)
    build(tiny_ws, [dates[1]], cfg=cfg)  # the holder keeps its name, the rebuilt date a file: 2 files
    assert len(tiny_ws.feature_files("income")) == 2
    build(tiny_ws, [dates[2]], cfg=cfg)  # 3 files > 2: merged
    for fam, table in want.items():
        assert [p.name for p in tiny_ws.feature_files(fam)] == [ft.file_name(dates)], fam
        pd.testing.assert_frame_equal(_table(tiny_ws.feature_table(fam)), table, check_exact=True, obj=fam)
    assert all(not ds for ds in build(tiny_ws, cfg=cfg).built.values())  # the record still vouches for every date
    # a merge killed after removing one old file, or before renaming the merged one in: the next build restores
    build(tiny_ws, [dates[0]], cfg=cfg)
    assert len(tiny_ws.feature_files("income")) == 2
    demo = tiny_ws.feature_table("demo")
    real_replace, real_unlink, removed = os.replace, Path.unlink, []

    def replace(src: object, dst: object) -> None:
        if kill_at == "rename" and Path(dst).name == ft.file_name(dates):
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    def unlink(path: Path, missing_ok: bool = False) -> None:
        if kill_at == "removal" and path.parent == demo and path.suffix == ".parquet":
            if len(ft.files(demo)) == 3 or removed:  # the merge removes the three old files
                removed.append(path)
            if len(removed) == 2:
                raise KeyboardInterrupt("killed")
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(ft.os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(KeyboardInterrupt):
        build(tiny_ws, [dates[1]], cfg=cfg)  # 3 files again: the merge is killed
    monkeypatch.setattr(ft.os, "replace", real_replace)
    monkeypatch.setattr(Path, "unlink", real_unlink)
    left = len(pd.read_parquet(demo)) if ft.files(demo) else 0
    assert left < len(want["demo"]), "the kill came after the table was whole again"
    build(tiny_ws, cfg=cfg)
    for fam, table in want.items():
        pd.testing.assert_frame_equal(_table(tiny_ws.feature_table(fam)), table, check_exact=True, obj=fam)
