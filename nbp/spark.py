"""The Spark session of ``compute.engine: spark``, and the one check that Spark can start.

Every stage that runs on Spark takes its session from :func:`session`, so the master and
settings come from the config (``spark:`` in ``configs/base.yaml``) and nothing else starts
a JVM. One session per process: Spark allows no second one, so a later call with another
config gets the running session (tests share one ``local[2]`` session).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

from nbp.config import Config
from nbp.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

MIN_JAVA = 17


def java_version() -> int | None:
    """Major version of the ``java`` on PATH (or under ``JAVA_HOME``), None when there is none."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major  # "1.8" is Java 8


def check_java() -> None:
    """Spark 4 needs Java 17 or later.

    Raises:
        ConfigError: no Java, or an older one; the message says what to install.
    """
    v = java_version()
    if v is None or v < MIN_JAVA:
        found = "no java on PATH or JAVA_HOME" if v is None else f"java {v} found"
        raise ConfigError(
            f"compute.engine: spark needs Java {MIN_JAVA} or later ({found}); install it "
            f"(Debian: apt-get install openjdk-17-jre-headless) or set compute.engine: duckdb"
        )


def session(cfg: Config) -> SparkSession:
    """The process's Spark session, started from ``cfg.spark`` on first use.

    A ``local[N]`` master binds to 127.0.0.1 (no network lookups), runs its Python workers
    on this interpreter and keeps Spark's web UI off. Timestamps are UTC, as everywhere in nbp.

    Raises:
        ConfigError: Java is missing or too old.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    check_java()
    sc = cfg.spark
    local = sc.master.startswith("local")
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    b = (
        SparkSession.builder.master(sc.master)
        .appName(sc.app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(sc.shuffle_partitions))
        .config("spark.driver.memory", sc.driver_memory)
        .config("spark.driver.maxResultSize", "0")  # a bank's training set comes back whole; the heap bounds it
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.ansi.enabled", "false")  # DuckDB semantics: x / 0 is NULL, not an error
    )
    if local:
        b = b.config("spark.driver.host", "127.0.0.1").config("spark.local.dir", tempfile.mkdtemp(prefix="nbp-spark-"))
    for k, v in sc.conf.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    log.info("spark: %s, Spark %s", sc.master, spark.version)
    return spark
