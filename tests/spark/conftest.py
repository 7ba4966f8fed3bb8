"""The Spark engine's tests: one local[2] session for the whole run, and a small hub database.

The session is started through :mod:`hub.spark` (Splink's jar, a quiet log,
127.0.0.1), as ``linkage-hub match --engine spark`` starts it, with the Java on
this machine and the pyspark that ``scripts/setup.sh`` installs.  Starting a
JVM takes 20-40 s here, so every test shares it.

The database holds the synthetic county's seven exports (3,000 people, about
1,200 records), encoded as agency-kit encodes them -- attributes included, so
the rule set can run -- and ingested as ``linkage-hub ingest`` loads them.
Nothing here is a real person.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

PEOPLE = 3000
SEED = 5


def build_hub_db(db: Path, people: int = PEOPLE, seed: int = SEED) -> int:
    """Encode the synthetic county and ingest it into ``db``; the number of records."""
    from agency_kit.mapping import apply_mapping, finish_attributes, mapping_from_document
    from hub.ingest import ingest_opened
    from linkage.encode import encode_records
    from linkage.keys import LinkageSecret
    from linkage.normalise import normalise_records
    from linkage.schema import load_schema
    from synthetic.county import AS_OF, generate_county, mapping_documents

    schema = load_schema("judicial-assistance")
    secret = LinkageSecret(hashlib.sha256(b"aidlink spark tests").digest())
    county = generate_county(people=people, seed=seed)
    docs = mapping_documents("parquet")
    rng = np.random.default_rng(seed)
    opened = []
    for ds, frame in sorted(county.exports.items()):
        if ds not in docs:
            continue
        mapping = mapping_from_document(docs[ds], schema)
        fields, attrs_raw, _ = apply_mapping(frame.reset_index(drop=True), mapping)
        normalised, _ = normalise_records(fields, schema)
        table = encode_records(normalised, schema, secret, rng=rng)
        attrs = finish_attributes(attrs_raw, normalised, mapping, schema, AS_OF)
        for c in attrs.columns:
            table = table.append_column(c, pa.Array.from_pandas(attrs[c]))
        table = table.add_column(0, "token", pa.array([rng.bytes(16).hex() for _ in range(table.num_rows)]))
        manifest = {"version": 1, "package_id": hashlib.sha256(f"{seed}/{ds}".encode()).hexdigest()[:32],
                    "direction": "to_hub", "agency": mapping.agency, "sender": mapping.agency,
                    "recipient": "hub", "dataset": mapping.dataset, "dataset_kind": mapping.dataset_kind,
                    "schema_id": schema.id, "schema_fingerprint": schema.fingerprint,
                    "key_check_value": secret.key_check_value(),
                    "content_sha256": hashlib.sha256(ds.encode()).hexdigest(), "row_count": table.num_rows}
        opened.append(SimpleNamespace(manifest=manifest, table=table))
    return ingest_opened(db, opened, lsh_seed=seed).records_total


def java_on_this_machine() -> str | None:
    """The ``java`` Spark would start: ``$JAVA_HOME/bin/java`` if JAVA_HOME is set, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        return str(java) if java.is_file() and os.access(java, os.X_OK) else None
    return shutil.which("java")


@pytest.fixture(scope="session")
def spark():
    """A local[2] Spark session started by :func:`hub.spark.start_session`, stopped at the end.

    Skipped only when this machine has no Java; pyspark itself is installed by ``scripts/setup.sh``
    (the ``spark`` extra), so a missing pyspark fails the tests instead of hiding them.

    The JVM compiles with C1 only (``-XX:TieredStopAtLevel=1``): on small data the JIT's work on
    Spark's generated code is most of the CPU time, and C1 costs about 40 % less of it (measured:
    JVM CPU of u estimation 64 s -> 39 s, of one EM session 30 s -> 16 s); long runs want C2.  Two
    shuffle partitions (one per core) instead of the hub's four per core: the test data is tiny."""
    if java_on_this_machine() is None:
        pytest.skip("no Java on this machine (set JAVA_HOME or put java on PATH): the Spark engine needs Java 17+")
    from hub.spark import start_session

    hs = start_session("local[2]", {"spark.driver.memory": "2g", "spark.sql.shuffle.partitions": "2",
                                    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"})
    yield hs.session
    hs.stop()


@pytest.fixture(scope="session")
def hub_db(tmp_path_factory) -> Path:
    """A hub database with the synthetic county ingested (copy it before matching)."""
    db = tmp_path_factory.mktemp("spark-hub") / "hub.duckdb"
    build_hub_db(db)
    return db
