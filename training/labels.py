"""Labels and product holdings, exactly as the export spec defines them.

Time convention (spec, "Point in time" and "Labels"): an as-of date T stands for
the instant T 00:00. A record dated D is known at T when D < T.

* A loan is **active at T** when it was granted before T (``grant_date < T``)
  and had not ended before T: by ``end_date`` where the bank fills it
  (active while ``end_date >= T``), otherwise by its term
  (active while ``grant_date + term_months >= T``). A granted loan with neither
  an end date nor a term counts as active.
* The **label** for product P at T with horizon H days is 1 when a loan of P has
  ``grant_date`` in ``(T, T+H]`` (``T < grant_date <= T + H``).
* Customers holding an active P loan at T are not candidates for P at T.

Note the spec's boundary: a loan granted on day T itself is neither known at T
nor inside the label window; it is known from the next as-of on.
"""

from __future__ import annotations

import duckdb
import pandas as pd

KEY = ["customer_id", "as_of"]

_SQL = """
WITH ent AS (SELECT row_number() OVER () - 1 AS _row, customer_id, as_of FROM entities),
lp AS (
    SELECT customer_id, grant_date,
           coalesce(end_date,
                    CASE WHEN term_months IS NOT NULL
                         THEN grant_date + to_months(CAST(term_months AS INTEGER)) END) AS ended
    FROM loans WHERE product = $product AND grant_date IS NOT NULL
)
SELECT ent._row,
       bool_or(lp.grant_date < ent.as_of AND (lp.ended IS NULL OR lp.ended >= ent.as_of)) AS holds,
       bool_or(lp.grant_date > ent.as_of AND lp.grant_date <= ent.as_of + to_days($h)) AS hit
FROM ent JOIN lp USING (customer_id)
GROUP BY ent._row
"""


def _flags(entities: pd.DataFrame, loans: pd.DataFrame, product: str, horizon_days: int) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        con.register("entities", entities[KEY])
        con.register("loans", loans[["customer_id", "product", "grant_date", "end_date", "term_months"]])
        got = con.execute(_SQL, {"product": product, "h": int(horizon_days)}).df()
    finally:
        con.close()
    out = pd.DataFrame({"holds": False, "hit": False}, index=range(len(entities)))
    out.loc[got["_row"].to_numpy(), "holds"] = got["holds"].fillna(False).to_numpy(bool)
    out.loc[got["_row"].to_numpy(), "hit"] = got["hit"].fillna(False).to_numpy(bool)
    return out.set_axis(entities.index)


def holds_active(entities: pd.DataFrame, loans: pd.DataFrame, product: str) -> pd.Series:
    """Whether each (customer_id, as_of) holds an active loan of ``product``.

    Args:
        entities: columns ``customer_id``, ``as_of`` (datetime64, month starts).
        loans: the ingested loans table (``customer_id``, ``product``,
            ``grant_date``, ``end_date``, ``term_months``).
        product: a loan product name.

    Returns:
        Boolean Series aligned with ``entities`` (same index).
    """
    return _flags(entities, loans, product, 0)["holds"].rename("holds_active")


def label(entities: pd.DataFrame, loans: pd.DataFrame, product: str, horizon_days: int) -> pd.Series:
    """1 when a ``product`` loan is granted in ``(as_of, as_of + horizon_days]``.

    Args:
        entities: columns ``customer_id``, ``as_of``.
        loans: the ingested loans table.
        product: a loan product name.
        horizon_days: the label horizon H.

    Returns:
        Integer Series (0/1) aligned with ``entities``.
    """
    return _flags(entities, loans, product, horizon_days)["hit"].astype(int).rename("label")
