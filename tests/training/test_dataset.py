from __future__ import annotations

import pandas as pd

from training.dataset import capped_rate, closed_as_ofs, downsample, entity_rows


def test_closed_windows_end_before_the_cutoff() -> None:
    as_ofs = list(pd.date_range("2025-01-01", "2025-06-01", freq="MS"))
    # window of 2025-03-01 closes 2025-05-30, before a 2025-06-01 cutoff; 2025-04-01's does not
    got = closed_as_ofs(as_ofs, pd.Timestamp("2025-06-01"), 90)
    assert got[-1] == pd.Timestamp("2025-03-01")
    # a grant on T+H itself (2025-05-30) is only known from the next day on
    assert closed_as_ofs(as_ofs, pd.Timestamp("2025-05-31"), 90)[-1] == pd.Timestamp("2025-03-01")
    assert closed_as_ofs(as_ofs, pd.Timestamp("2025-05-30"), 90)[-1] == pd.Timestamp("2025-02-01")


def test_entity_rows_skip_unknown_customers_and_holders() -> None:
    customers = pd.DataFrame(
        {
            "customer_id": ["old", "new", "holder"],
            "open_date": pd.to_datetime(["2020-01-01", "2025-03-15", "2020-01-01"]),
        }
    )
    loans = pd.DataFrame(
        {
            "customer_id": ["holder", "old"],
            "product": ["consumer", "consumer"],
            "grant_date": pd.to_datetime(["2024-12-01", "2025-04-10"]),
            "end_date": pd.to_datetime([None, None]),
            "term_months": pd.array([12, 12], "Int64"),
        }
    )
    ent = entity_rows(customers, loans, "consumer", [pd.Timestamp("2025-03-01"), pd.Timestamp("2025-04-01")], 90)
    rows = set(map(tuple, ent[["customer_id", "as_of"]].astype(str).to_numpy()))
    assert ("new", "2025-03-01") not in rows  # not a customer yet
    assert ("new", "2025-04-01") in rows
    assert not any(c == "holder" for c, _ in rows)
    assert ent.set_index(["customer_id", "as_of"])["label"].to_dict()[("old", pd.Timestamp("2025-04-01"))] == 1


def test_downsample_keeps_positives_and_reweights() -> None:
    ent = pd.DataFrame(
        {
            "customer_id": [str(i) for i in range(20_000)],
            "as_of": pd.Timestamp("2025-01-01"),
            "label": [1] * 100 + [0] * 19_900,
        }
    )
    out = downsample(ent, 0.1, seed=1)
    assert out["label"].sum() == 100
    # weighted negatives estimate the original count
    est = out.loc[out["label"] == 0, "weight"].sum()
    assert abs(est - 19_900) < 4 * (19_900 * 0.1 * 0.9) ** 0.5 / 0.1


def test_capped_rate_bounds_rows_and_keeps_positives() -> None:
    ent = pd.DataFrame({"label": [1] * 300 + [0] * 99_700})
    assert capped_rate(ent, 1.0, 200_000) == 1.0  # under the cap: the configured rate
    assert capped_rate(ent, 0.05, 50_000) == 0.05  # the configured rate is lower than the cap needs
    rate = capped_rate(ent, 1.0, 10_000)
    out = downsample(ent.assign(customer_id="c", as_of=pd.Timestamp("2025-01-01")), rate, seed=3)
    assert out["label"].sum() == 300
    # expected rows = cap; allow 4 binomial standard deviations of the kept negatives
    assert abs(len(out) - 10_000) < 4 * (99_700 * rate * (1 - rate)) ** 0.5
    assert out.loc[out["label"] == 0, "weight"].iloc[0] == 1 / rate


def test_one_retrieval_serves_every_part_in_its_own_order(monkeypatch) -> None:
    """with_features_many: overlapping parts, one retrieval of the unique rows, rows in any order back."""
    from training import dataset

    asked = []

    def fake(cfg, ws, ent, services):
        asked.append((len(ent), list(services)))
        out = ent[dataset.KEYS].copy()
        out["f"] = [float(c[1:]) * 10 + t.month for c, t in zip(out["customer_id"], out["as_of"], strict=True)]
        out["g"] = out["f"] * 2
        return out.sample(frac=1.0, random_state=3).reset_index(drop=True)

    monkeypatch.setattr(dataset, "historical_services", fake)
    monkeypatch.setattr("features.store.service_features", lambda cfg, ws, s: ["f"] if s == "a" else ["f", "g"])
    t1, t2 = pd.Timestamp("2025-01-01"), pd.Timestamp("2025-02-01")
    p1 = pd.DataFrame({"customer_id": ["c1", "c2", "c3"], "as_of": [t1, t1, t2], "label": [0, 1, 0]})
    p2 = pd.DataFrame({"customer_id": ["c3", "c1"], "as_of": [t2, t2]})
    a, b = dataset.with_features_many(None, None, [(p1, "a"), (p2, "b")])
    assert asked == [(4, ["a", "b"])]  # c3@t2 asked once
    assert list(a.columns) == ["customer_id", "as_of", "label", "f"]
    assert a["f"].tolist() == [11.0, 21.0, 32.0] and a["label"].tolist() == [0, 1, 0]
    assert b["f"].tolist() == [32.0, 12.0] and b["g"].tolist() == [64.0, 24.0]
