"""The Spark session and the DuckDB → Spark SQL translation (nbp/spark.py, nbp/dialect.py)."""

from __future__ import annotations

import duckdb
import pytest

from nbp import spark as spark_mod
from nbp.dialect import to_spark
from nbp.errors import ConfigError, FeatureStoreError

pytestmark = pytest.mark.integration


def test_session_is_configured_from_the_config(spark):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "8"
    assert spark.sparkContext.master == "local[2]"
    heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()
    assert heap > 2 * 1024**3  # spark.driver.memory reached the JVM (Spark's own 1g loses big results)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT k, count(*) FILTER (WHERE v > 1) AS n, coalesce(sum(v) FILTER (WHERE k = 'a'), 0) AS s "
        "FROM t GROUP BY ALL",
        "SELECT k, CASE WHEN sum(v) > 0 THEN sum(w) / sum(v) END AS r FROM t GROUP BY k",
        "SELECT k, year(d) * 12 + month(d) AS mi FROM t",
    ],
)
def test_transpiled_sql_gives_duckdbs_answer(spark, sql):
    rows = [("a", 1.0, 2.0, "2024-03-05"), ("a", 3.0, 0.5, "2024-12-31"), ("b", 0.0, 1.0, "2025-01-01")]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (k VARCHAR, v DOUBLE, w DOUBLE, d DATE)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, CAST(? AS DATE))", rows)
    want = sorted(con.execute(sql).fetchall())
    spark.createDataFrame(rows, "k string, v double, w double, d string").selectExpr(
        "k", "v", "w", "CAST(d AS DATE) AS d"
    ).createOrReplaceTempView("t")
    got = sorted(tuple(r) for r in spark.sql(to_spark(sql)).collect())
    assert got == want


@pytest.mark.parametrize(
    "sql", ["SELECT * FROM a ASOF JOIN b ON a.k = b.k AND a.t >= b.t", "SELECT list(x ORDER BY t) FROM a"]
)
def test_constructs_outside_the_portable_subset_are_refused(sql):
    with pytest.raises(FeatureStoreError, match="portable subset"):
        to_spark(sql)


def test_missing_java_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(spark_mod, "java_version", lambda: None)
    with pytest.raises(ConfigError, match="Java 17"):
        spark_mod.check_java()
    monkeypatch.setattr(spark_mod, "java_version", lambda: 11)
    with pytest.raises(ConfigError, match="java 11 found"):
        spark_mod.check_java()


def test_a_failed_spark_job_is_one_line_on_the_command_line(spark, monkeypatch):
    """A Spark error (here a SQL error raised by Spark itself) reaches the user as one line, exit 1."""
    import click
    from click.testing import CliRunner

    from nbp.cli import common, spark_failure

    @click.command()
    @common
    def broken(ctx):
        spark.sql("SELECT no_such_column FROM range(1)").collect()

    res = CliRunner().invoke(broken, [])
    assert res.exit_code == 1
    err = [ln for ln in res.output.splitlines() if ln.startswith("error: spark job failed:")]
    assert len(err) == 1 and "no_such_column" in err[0].lower()
    assert "Traceback" not in res.output
    assert spark_failure(ValueError("not spark")) == ""
