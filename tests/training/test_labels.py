"""Labels and holdings follow the spec's definitions to the day."""

from __future__ import annotations

import pandas as pd
import pytest

from training.labels import holds_active, label

T = pd.Timestamp("2025-03-01")


def _loans(*rows: tuple) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["customer_id", "product", "grant_date", "end_date", "term_months"])
    for c in ("grant_date", "end_date"):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[us]")
    df["term_months"] = df["term_months"].astype("Int64")
    return df


def _ent(*ids: str, as_of: pd.Timestamp = T) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": list(ids), "as_of": [as_of] * len(ids)}).astype({"as_of": "datetime64[us]"})


@pytest.mark.parametrize(
    ("grant", "expected"),
    [
        ("2025-03-01", 0),  # granted on T itself: outside (T, T+H]
        ("2025-03-02", 1),  # the day after T
        ("2025-05-30", 1),  # T + 90 days: last day inside
        ("2025-05-31", 0),  # T + 91 days
        ("2025-02-28", 0),  # before T
    ],
)
def test_label_window_boundaries(grant: str, expected: int) -> None:
    loans = _loans(("c1", "consumer", grant, None, 12))
    assert label(_ent("c1"), loans, "consumer", 90).tolist() == [expected]


def test_label_only_counts_the_product_and_granted_loans() -> None:
    loans = _loans(
        ("c1", "business_flow", "2025-03-10", None, 12),  # other product
        ("c2", "consumer", None, None, None),  # rejected: never granted
        ("c3", "consumer", "2025-03-10", None, 12),
    )
    assert label(_ent("c1", "c2", "c3", "c4"), loans, "consumer", 90).tolist() == [0, 0, 1, 0]


def test_active_by_end_date_where_filled() -> None:
    loans = _loans(
        ("ended_before", "consumer", "2024-01-10", "2025-02-28", 36),
        ("ends_on_T", "consumer", "2024-01-10", "2025-03-01", 1),  # not ended before T
        ("granted_on_T", "consumer", "2025-03-01", None, 12),
    )
    got = holds_active(_ent("ended_before", "ends_on_T", "granted_on_T"), loans, "consumer")
    assert got.tolist() == [False, True, False]


def test_active_by_term_when_end_date_empty() -> None:
    loans = _loans(
        ("term_over", "consumer", "2024-01-15", None, 12),  # ended 2025-01-15
        ("term_running", "consumer", "2024-06-15", None, 12),  # ends 2025-06-15
        ("no_term", "consumer", "2020-01-01", None, None),  # granted, no end known
    )
    got = holds_active(_ent("term_over", "term_running", "no_term"), loans, "consumer")
    assert got.tolist() == [False, True, True]


def test_results_align_with_entity_index_and_repeated_rows() -> None:
    loans = _loans(("c1", "consumer", "2025-03-05", None, 12))
    ent = pd.concat([_ent("c1"), _ent("c2"), _ent("c1", as_of=pd.Timestamp("2025-04-01"))])
    ent.index = [10, 20, 30]
    y = label(ent, loans, "consumer", 90)
    assert y.index.tolist() == [10, 20, 30]
    assert y.tolist() == [1, 0, 0]
