"""The Spark engine's session: started so that Splink works on it without the user knowing how.

``linkage-hub match --engine spark`` runs the same Splink model as the DuckDB
engine on a Spark session (:func:`hub.model.run_match`).  Splink on Spark needs
two things a plain ``SparkSession.builder.getOrCreate()`` does not give it:

* **its similarity jar** (Jaro-Winkler and friends as Scala UDFs, registered by
  ``SparkAPI(register_udfs_automatically=True)``): the jar must be on
  ``spark.jars`` when the session is created, or the registration fails.
  :func:`similarity_jar` finds the jar Splink ships for the running Spark major
  version (``splink.backends.spark.similarity_jar_location``).  The hub's own
  comparisons use none of those functions (Dice is ``bit_count`` on BIGINT
  words), but Splink registers them all, and a session without the jar makes it
  log a warning per run;
* **a checkpoint directory**: Splink's ``SparkAPI`` breaks the lineage of its
  intermediate tables (comparison vectors, predictions, clustering iterations)
  by writing them to Parquet under the SparkContext's checkpoint directory
  (``break_lineage_method="parquet"``, its default outside Databricks) and
  fails without one.  :func:`run_directory` makes a fresh directory per run,
  sets it as the checkpoint directory, and removes it afterwards.  The hub
  keeps that method on every master (:func:`lineage_method`), a local one
  included: an executor lost mid-run costs a re-read, not a recomputation from
  the start, and -- what decides it on one machine -- a later query reads the
  table back from its files.  With ``persist`` instead, a later query finds the
  cached table only if Spark's cache manager recognises its plan, and Splink's
  EM iterations (a CTE over a view over the cached comparison vectors) are not
  recognised: every iteration computed the comparison vectors again from the
  records, once per branch of its ``UNION ALL`` (Spark inlines a CTE referenced
  more than once).  Measured at 30,001 records on ``local[2]``: EM 497 s -> 254 s,
  the whole job 423 -> 328 CPU seconds (docs/scale-out.md).

Everything else is about being quiet and self-contained: the web UI and the
console progress bar are off; Spark's own logging goes to stderr at ERROR (a
log4j2 file written next to the session's scratch); a local master binds the
driver to 127.0.0.1, so it starts on a machine without a network; the
warehouse and scratch directories are under a temporary directory removed at
stop, not the current directory.  The driver heap (``spark.driver.memory``,
where a local master does all the work) defaults to 40 % of the machine's
memory, between 1 and 16 GiB; any ``spark.*`` setting can be overridden
(``--spark-conf KEY=VALUE``).

Files exchanged with the cluster (the records' Parquet copy written by ingest,
the blocked pairs, predictions and clusters) are addressed as ``file:`` URIs:
on a real cluster the hub's directory must be mounted at the same path on the
driver and every executor (see docs/scale-out.md).

Starting a JVM is slow (20-40 s on the 2-core development machine); tests
share one session (``tests/spark/conftest.py``) and pass it in.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linkage.errors import ConfigError, Problem, StateError

log = logging.getLogger("aidlink.hub.spark")

DEFAULT_MASTER = "local[*]"
APP_NAME = "aidlink-linkage-hub"
MIN_DRIVER_MIB, MAX_DRIVER_MIB = 1024, 16 * 1024
DRIVER_MEMORY_SHARE = 0.4
PARTITIONS_PER_CORE = 4

_LOCAL = re.compile(r"^local(\[(\*|\d+)(,\s*\d+)?\])?$")
_CONF_KEY = re.compile(r"^spark\.[A-Za-z0-9_.\-]+$")

LOG4J2_PROPERTIES = """\
# aidlink: Spark's own logging to stderr, errors only (stdout stays clean for --json)
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
# pyspark counts as a shell: Spark prints "Setting default log level" unless the logger of the class that
# starts it (the Python gateway) has a level of its own equal to the root's
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
"""


def is_local(master: str) -> bool:
    """Whether ``master`` runs everything in the driver's JVM (``local``, ``local[N]``, ``local[*]``)."""
    return bool(_LOCAL.match(master.strip()))


def local_cores(master: str) -> int:
    """The cores a local master uses (``local[*]``: every core of this machine)."""
    m = _LOCAL.match(master.strip())
    if not m or not m.group(2):
        return 1
    return (os.cpu_count() or 1) if m.group(2) == "*" else int(m.group(2))


def default_driver_memory() -> str:
    """40 % of this machine's memory, between 1 and 16 GiB, as ``<MiB>m``."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 4 * 1024**3
    mib = int(total * DRIVER_MEMORY_SHARE / 1024**2)
    return f"{min(max(mib, MIN_DRIVER_MIB), MAX_DRIVER_MIB)}m"


def parse_conf(items: Mapping[str, str] | list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """``KEY=VALUE`` strings (or a mapping) as a dict of Spark settings; refuses keys not ``spark.*``."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = []
        for i, item in enumerate(items):
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError("--spark-conf", [Problem(f"[{i}]", "expected KEY=VALUE")])
            pairs.append((key.strip(), value.strip()))
    bad = [Problem(k, "Spark settings start with 'spark.'") for k, _ in pairs if not _CONF_KEY.match(k)]
    if bad:
        raise ConfigError("--spark-conf", bad)
    return dict(pairs)


def similarity_jar() -> Path:
    """Splink's similarity-UDF jar for the installed Spark's major version."""
    from splink.backends.spark import similarity_jar_location

    p = Path(similarity_jar_location())
    if not p.is_file():
        raise StateError("Splink's Spark similarity jar is missing from its installation; reinstall splink")
    return p


JAVA_OPTIONS = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")


def session_config(master: str, scratch: Path, conf: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every Spark setting of the hub's session.  ``conf`` overrides any of them, except that JVM
    options given for the driver or executors are added to the hub's (the log configuration)."""
    log4j = scratch / "log4j2.properties"
    out = {
        "spark.master": master,
        "spark.app.name": APP_NAME,
        "spark.jars": str(similarity_jar()),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": default_driver_memory(),
        "spark.driver.extraJavaOptions": f"-Dlog4j.configurationFile={log4j.as_uri()}",
        "spark.executor.extraJavaOptions": f"-Dlog4j.configurationFile={log4j.as_uri()}",
        "spark.sql.warehouse.dir": (scratch / "warehouse").as_uri(),
        "spark.sql.session.timeZone": "UTC",
    }
    if is_local(master):
        parts = str(PARTITIONS_PER_CORE * local_cores(master))
        out.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                    "spark.local.dir": str(scratch / "local"),
                    "spark.sql.shuffle.partitions": parts, "spark.default.parallelism": parts})
    for k, v in (conf or {}).items():
        out[k] = f"{v} {out[k]}" if k in JAVA_OPTIONS else v
    return out


def lineage_method(master: str) -> str:
    """How Splink breaks the lineage of its intermediate tables: Parquet files under the checkpoint
    directory, on any ``master`` (see the module docstring for why not ``persist`` on a local one)."""
    del master  # the same on every master; kept so that a master may need another method one day
    return "parquet"


@dataclass
class HubSpark:
    """A Spark session the hub started (``owned``) or was given, with its scratch directory."""

    session: Any
    scratch: Path
    owned: bool

    def stop(self) -> None:
        if self.owned:
            self.session.stop()
            shutil.rmtree(self.scratch, ignore_errors=True)


def start_session(master: str = DEFAULT_MASTER, conf: Mapping[str, str] | None = None) -> HubSpark:
    """Start the hub's Spark session (see the module docstring for what it sets).

    Refuses (StateError) when pyspark is not installed or Java cannot be started.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise StateError("the Spark engine needs pyspark: install the `spark` extra "
                         "(bash scripts/setup.sh installs it)") from e
    scratch = Path(tempfile.mkdtemp(prefix="aidlink-spark-"))
    (scratch / "log4j2.properties").write_text(LOG4J2_PROPERTIES, encoding="utf-8")
    settings = session_config(master, scratch, conf)
    builder = SparkSession.builder
    for k, v in settings.items():
        builder = builder.config(k, v)
    env = {"SPARK_LOCAL_IP": "127.0.0.1"} if is_local(master) else {}
    saved = {k: os.environ.get(k) for k in env}
    try:
        os.environ.update(env)
        session = builder.getOrCreate()
    except Exception as e:  # pyspark raises plain exceptions when the JVM cannot start
        shutil.rmtree(scratch, ignore_errors=True)
        raise StateError(f"could not start a Spark session on {master} ({type(e).__name__}); is Java 17 or "
                         f"later installed and on PATH (or JAVA_HOME set)?") from e
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    session.sparkContext.setLogLevel("ERROR")
    log.info("Spark %s session on %s", session.version, master)
    return HubSpark(session, scratch, owned=True)


def active_session() -> Any | None:
    """The SparkSession active in this process, if pyspark is installed and one is."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    return SparkSession.getActiveSession()


@contextmanager
def hub_spark(session: Any | None = None, master: str = DEFAULT_MASTER,
              conf: Mapping[str, str] | None = None) -> Iterator[HubSpark]:
    """The given session, else the one active in this process (both left running, ``master`` and
    ``conf`` not applied), else a new one (:func:`start_session`) stopped on exit."""
    session = session if session is not None else active_session()
    if session is not None:
        log.info("using the running Spark session on %s", session.sparkContext.master)
        yield HubSpark(session, Path(tempfile.gettempdir()), owned=False)
        return
    hs = start_session(master, conf)
    try:
        yield hs
    finally:
        hs.stop()


@contextmanager
def run_directory(session: Any, parent: Path) -> Iterator[Path]:
    """A fresh directory under ``parent`` for one run's exchange files, with ``checkpoints/`` set as the
    SparkContext's checkpoint directory (Splink writes its intermediate tables there); removed on exit."""
    parent.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="spark-run-", dir=parent))
    try:
        (d / "checkpoints").mkdir()
        session.sparkContext.setCheckpointDir((d / "checkpoints").as_uri())
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def read_parquet_view(session: Any, path: Path, view: str, columns: list[str] | None = None) -> None:
    """Temp view ``view`` over the Parquet file or directory ``path`` (only ``columns``, if given)."""
    df = session.read.parquet(path.as_uri())
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise StateError(f"{path.name} lacks the columns {', '.join(missing)} (written by an older ingest? "
                             "run `linkage-hub ingest` again to refresh it)")
        df = df.select(*columns)
    df.createOrReplaceTempView(view)


def write_parquet(session: Any, table: str, columns: list[str], path: Path,
                  at_least: tuple[str, float] | None = None) -> Path:
    """Write ``columns`` of the Spark table or view ``table`` to the Parquet directory ``path``; with
    ``at_least=(column, value)`` only the rows whose ``column`` is at least ``value``."""
    from pyspark.sql import functions as F

    df = session.table(table)
    if at_least is not None:
        df = df.where(F.col(at_least[0]) >= F.lit(float(at_least[1])))
    df.select(*columns).write.mode("overwrite").parquet(path.as_uri())
    return path
