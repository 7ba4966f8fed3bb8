"""The linkage report (hub.report, linkage-hub report): its document, its pages, its CLI.

A real run on a synthetic county (tests/report_support.py, built once per session) gives the
database; the document is checked against that database, and both pages and the JSON are scanned
for every token, keyed hash, filter word, CLK and raw identifier of the run.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner

from hub.cli import cli
from hub.model import weight_distribution
from hub.report import (
    CHART_TITLES,
    LANGS,
    _chart_libraries,
    _curve,
    _script_js,
    check_rule_set,
    count_set_bits,
    filter_words_sql,
    gather_report,
    messages,
    render_html,
    waterfall_records,
    write_report,
)
from hub.rules import load_rules
from hub.store import FilterColumns
from linkage.documents import validate_document
from linkage.errors import ConfigError, StateError
from linkage.schema import load_schema
from tests.report_support import LEGAL_BASIS, PURPOSE, find_leaks, report_run

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "hub" / "report_template.html"


@pytest.fixture(scope="module")
def run():
    return report_run()


@pytest.fixture(scope="module")
def doc(run):
    return gather_report(run.db, run.run_id)


@pytest.fixture(scope="module")
def pages(doc):
    return {lang: render_html(doc, lang) for lang in LANGS}


def q(db, sql, params=()):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


# ---------------------------------------------------------------- message catalogue


def _template_keys() -> tuple[set[str], set[str]]:
    """Keys the template uses literally, and prefixes it completes at render time (``'x.' ~ v``)."""
    text = TEMPLATE.read_text("utf-8")
    literal = set(re.findall(r"t\('([a-z0-9_.]+)'[,)]", text))
    prefixes = set(re.findall(r"t\('([a-z0-9_.]+)' ~", text))
    return literal, prefixes


# every value the template appends to a prefix, from the document's enums and the code
DYNAMIC = {
    "enc.": ["bloom_filter", "keyed_hash", "record_clk"],
    "th.": ["link", "cluster"],
    "th.diag_": ["scored_pairs", "links_only"],
    "clue.status_": ["no_clues", "not_applied"],
    "clue_type.": ["judicial_assistance", "referral", "supervision_suggestion", "exclusion"],
    "priv.attacks_": ["not_available", "not_run", "ok"],
}


def test_both_languages_have_every_key_with_the_same_placeholders():
    msg = messages()
    assert set(msg) == set(LANGS)
    assert set(msg["zh"]) == set(msg["en"])
    for key in msg["en"]:
        zh, en = msg["zh"][key], msg["en"][key]
        assert zh.strip() and en.strip(), key
        assert set(re.findall(r"\{(\w+)\}", zh)) == set(re.findall(r"\{(\w+)\}", en)), key
    # Chinese text is Chinese (a few symbols are the same in both)
    not_cjk = [k for k, v in msg["zh"].items() if not re.search(r"[\u4e00-\u9fff]", v)]
    assert not_cjk == ["enc.blip"], not_cjk


def test_every_key_the_page_uses_is_in_the_catalogue():
    literal, prefixes = _template_keys()
    assert literal and prefixes
    assert prefixes == set(DYNAMIC), "a new dynamic key prefix in the template: list its values in DYNAMIC"
    from hub.report import AXIS_TITLES, HOW

    used = literal | {p + v for p, vs in DYNAMIC.items() for v in vs} | set(CHART_TITLES.values())
    used |= set(AXIS_TITLES.values()) | set(HOW.values()) | {"axis.expected_precision", "axis.expected_recall",
                                                             "yes", "no", "audit.status_no_log"}
    for lang, catalogue in messages().items():
        missing = used - set(catalogue)
        assert not missing, f"{lang}: {sorted(missing)}"
    unused = set(messages()["en"]) - used
    assert not unused, f"keys no page uses: {sorted(unused)}"


def test_schema_enums_are_the_values_the_template_expects():
    from linkage.documents import schema_document

    s = schema_document("report")["properties"]
    assert set(s["diagnostics"]["properties"]["source"]["enum"]) == set(DYNAMIC["th.diag_"])
    assert set(s["clues"]["properties"]["status"]["enum"]) == {"clues", *DYNAMIC["clue.status_"]}
    assert set(s["privacy"]["properties"]["attacks"]["properties"]["status"]["enum"]) == set(DYNAMIC["priv.attacks_"])


# ---------------------------------------------------------------- the document against the database


def test_the_document_validates_and_says_what_the_run_was(run, doc):
    validate_document(doc, "report", "test")
    assert doc["run"]["run_id"] == run.run_id
    assert doc["run"]["purpose"] == PURPOSE and doc["run"]["legal_basis"] == LEGAL_BASIS
    assert doc["run"]["config"]["retention_days"] == 90 == doc["retention"]["retention_days"]
    ((delete_after,),) = q(run.db, "SELECT delete_after FROM runs WHERE run_id = ?", [run.run_id])
    assert doc["retention"]["delete_after"] == delete_after.isoformat()
    assert doc["retention"]["overdue"] is False


def test_datasets_counts_and_key_check_come_from_the_packages(run, doc):
    rows = q(run.db, "SELECT package_id, agency, dataset, n_records FROM packages ORDER BY package_id")
    by_id = {d["package_id"]: d for d in doc["datasets"]}
    assert set(by_id) == {r[0] for r in rows}
    for pid, agency, dataset, n in rows:
        d = by_id[pid]
        assert (d["agency"], d["dataset"], d["records"], d["counts"]["encoded"]) == (agency, dataset, n, n)
    ((records,),) = q(run.db, "SELECT count(*) FROM records")
    assert doc["totals"]["records"] == records == sum(d["records"] for d in doc["datasets"])
    assert doc["key_check"]["agree"] and doc["key_check"]["schema_fingerprints_agree"]
    assert len(doc["key_check"]["values"]) == 1


def test_minimisation_lists_attributes_sent_against_allowed_and_used(doc):
    schema = load_schema("judicial-assistance")
    kinds = {a["dataset_kind"]: a for a in doc["minimisation"]["attributes"]}
    victims = kinds["procuratorate_victims"]
    assert set(victims["sent"]) <= set(schema.datasets["procuratorate_victims"].attributes)
    assert "compensated" in victims["used_by_rules"]
    assert all(not a["sent_not_allowed"] for a in kinds.values())
    for a in kinds.values():
        assert set(a["sent_not_used"]) == set(a["sent"]) - set(a["used_by_rules"])
    assert {f["name"] for f in doc["minimisation"]["fields"]} == set(schema.field_names)


def test_clue_counts_and_results_match_the_tables(run, doc):
    clusters = {(r, a): n for r, a, n in q(
        run.db, "SELECT rule_id, receiver, count(DISTINCT cluster_id) FROM clues WHERE run_id = ? GROUP BY ALL",
        [run.run_id])}
    assert clusters, "the fixture run must have clues"
    got = {(r["id"], a): n for r in doc["clues"]["rules"] for a, n in r["clusters_by_receiver"].items()}
    assert got == clusters
    assert doc["clues"]["status"] == "clues"
    rows = dict(q(run.db, "SELECT agency, clue_rows FROM result_packages WHERE run_id = ?", [run.run_id]))
    assert {r["agency"]: r["clue_rows"] for r in doc["results"]} == rows
    assert all("/" not in r["file_name"] for r in doc["results"])
    ((n_clusters,),) = q(run.db, "SELECT count(DISTINCT cluster_id) FROM clusters WHERE run_id = ?", [run.run_id])
    assert sum(s["clusters"] for s in doc["clusters"]["sizes"]) == n_clusters == doc["clusters"]["count"]


def test_threshold_diagnostics_agree_with_the_stored_links(run, doc):
    diag = doc["diagnostics"]
    assert diag["source"] == "scored_pairs"
    ((summary,),) = q(run.db, "SELECT summary FROM runs WHERE run_id = ?", [run.run_id])
    assert diag["pairs"] == json.loads(summary)["weights"]["pairs"] == sum(b["pairs"] for b in diag["bins"])
    link = doc["thresholds"]["link"]
    ((stored,),) = q(run.db, "SELECT count(*) FROM pairs WHERE run_id = ?", [run.run_id])
    assert stored == link["links"] == doc["totals"]["links"]
    # the curve is cumulative from the top: links at the bin edge at or below the threshold include every
    # stored link, and the edge above it holds no more than they
    edges = {c["match_weight"]: c["links"] for c in diag["curve"]}
    below = max(w for w in edges if w <= link["match_weight"])
    above = [w for w in edges if w > link["match_weight"]]
    assert edges[below] >= stored
    if above:
        assert edges[min(above)] <= stored
    assert all(a["links"] >= b["links"] for a, b in zip(diag["curve"], diag["curve"][1:], strict=False))


def test_model_section_gives_m_u_and_weight_per_level(run, doc):
    ((model,),) = q(run.db, "SELECT model FROM runs WHERE run_id = ?", [run.run_id])
    model = json.loads(model)
    assert [c["name"] for c in doc["model"]["comparisons"]] == [c["output_column_name"] for c in model["comparisons"]]
    for c in doc["model"]["comparisons"]:
        for lv in c["levels"]:
            assert lv["match_weight"] == pytest.approx(math.log2(lv["m"] / lv["u"]), rel=1e-3, abs=1e-3)
    assert doc["model"]["prior"] == pytest.approx(model["probability_two_random_records_match"], rel=1e-5)


def test_bit_statistics_equal_a_direct_count(run, doc):
    stats = {f["field"]: f for f in doc["privacy"]["bit_statistics"]["fields"]}
    assert "clk" in stats
    name = doc["encoding"]["filters"][0]["field"]
    f = stats[name]
    cols = [r[0] for r in q(run.db, "DESCRIBE records") if re.fullmatch(rf"bf_{name}_\d+", r[0])]
    rows = q(run.db, f"SELECT {', '.join(f'CAST({c} AS VARCHAR)' for c in cols)} FROM records "
                     f"WHERE {cols[0]} IS NOT NULL")
    counts = np.zeros(f["bits"], dtype=np.int64)
    for row in rows:
        bits = []
        for i, v in enumerate(row):
            width = min(128, f["bits"] - 128 * i)
            bits += [(int(v) >> k) & 1 for k in range(width)]
        counts += np.array(bits)
    assert f["records"] == len(rows)
    assert f["mean_fill"] == pytest.approx(counts.mean() / len(rows), rel=1e-3)
    assert f["never_set"] == int((counts == 0).sum()) and f["always_set"] == int((counts == len(rows)).sum())
    assert sum(f["histogram"]) == f["bits"]
    clk_rows = q(run.db, "SELECT clk FROM records WHERE clk IS NOT NULL")
    clk_bits = np.unpackbits(np.frombuffer(b"".join(bytes(r[0]) for r in clk_rows), np.uint8).reshape(len(clk_rows), -1),
                             axis=1).sum(axis=0)
    assert stats["clk"]["never_set"] == int((clk_bits == 0).sum())
    assert stats["clk"]["frequency_max"] == pytest.approx(clk_bits.max() / len(clk_rows), rel=1e-3)


def test_attacks_run_on_a_sample_of_the_runs_own_encodings(run, doc):
    from hub.privacy.stats import bit_statistics, sample_store
    from hub.report import ATTACK_SAMPLE
    from hub.store import RecordLayout, read_meta

    at = doc["privacy"]["attacks"]
    assert at["status"] == "ok" and at["source"] == "hub.privacy.stats.attack_sample"
    (records,), = q(run.db, "SELECT count(*) FROM records")
    assert at["sample"] == min(ATTACK_SAMPLE, records)
    got = {(r["attack"], r["target"]): r for r in at["results"]}
    schema = load_schema("judicial-assistance")
    # every keyed hash and blocking key, the name filters and the CLK are attacked
    for col in [f"eh_{f.name}" for f in schema.exact_fields] + [f"bk_{b.name}" for b in schema.blocking_keys]:
        assert ("keyed_hash", col) in got, col
    for key in (("frequency", "bf_name"), ("pattern_mining", "bf_name"), ("frequency", "clk"),
                ("bank_linking", "bf_name")):
        assert key in got, key
    for r in at["results"]:
        assert 0 < r["records"] <= at["sample"] and 0 <= r["claimed"] <= r["records"]
        assert r["claimed_share"] == pytest.approx(r["claimed"] / r["records"], abs=1e-4)
        assert r["reidentified"] is None  # the hub has no plaintext: claims only
    # the sample decodes the stored words as the report's own bit count does
    con = duckdb.connect(str(run.db), read_only=True)
    try:
        meta = read_meta(con)
        table = sample_store(con, RecordLayout.from_schema(schema, meta.lsh), sample_size=records + 1)
    finally:
        con.close()
    stats = {f["field"]: f for f in doc["privacy"]["bit_statistics"]["fields"]}
    mine = bit_statistics(table.column("bf_name"))
    assert mine["records"] == stats["name"]["records"]
    assert mine["frequency"]["mean"] == pytest.approx(stats["name"]["mean_fill"], rel=1e-3)
    assert mine["frequency"]["max"] == pytest.approx(stats["name"]["frequency_max"], rel=1e-3)


def test_filter_words_sql_and_bit_counting_on_a_literal_table():
    """Two records of package p carry a 192-bit filter (a 128-bit word and a 64-bit word); one of another
    package and one without the filter are not counted.  Position i counts bit i of the filter (the
    store's convention: bit 127 - i % 128 of word i // 128; the lone 64-bit word holds bits 128-191)."""
    f = FilterColumns("x", 192)
    con = duckdb.connect()
    con.execute("CREATE TABLE records (package_id VARCHAR, bf_x_0 HUGEINT, bf_x_1 HUGEINT)")
    top = -(1 << 127)  # only the word's highest bit set: filter bit 0
    con.execute("INSERT INTO records VALUES ('p', ?, 5), ('p', ?, 4), ('other', 1, 1), ('p', NULL, NULL)",
                [top + 1, top])
    n, counts = count_set_bits(con.sql(filter_words_sql(f), params=[["p"]]).to_arrow_reader(1), 24)
    assert n == 2 and len(counts) == 192
    assert counts[0] == 2 and counts[127] == 1  # word 0: its top bit twice, its lowest bit once
    assert counts[191] == 1 and counts[189] == 2  # word 1: 5 = its bits 0 and 2, 4 = its bit 2
    assert counts.sum() == 6


def test_weight_distribution_and_curve():
    w = np.array([-1.2, -0.9, 0.1, 3.0, 3.2, 10.0])
    d = weight_distribution(w, floor=-2.0)
    assert d["pairs"] == 6 and d["floor_match_weight"] == -2.0
    assert [(b["low"], b["pairs"]) for b in d["bins"]] == [(-1.5, 1), (-1.0, 1), (0.0, 1), (3.0, 2), (10.0, 1)]
    p = 1 / (1 + 2.0 ** -w)
    assert sum(b["expected_matches"] for b in d["bins"]) == pytest.approx(p.sum(), rel=1e-6)
    bins = [{"low": b["low"], "pairs": b["pairs"], "expected_matches": b["expected_matches"]} for b in d["bins"]]
    curve = {c["match_weight"]: c for c in _curve(bins, float(p.sum()))}
    assert curve[3.0]["links"] == 3
    assert curve[3.0]["expected_precision"] == pytest.approx(p[3:].sum() / 3, rel=1e-4)
    assert curve[3.0]["expected_recall"] == pytest.approx(p[3:].sum() / p.sum(), rel=1e-4)
    assert curve[-1.5]["links"] == 6 and curve[-1.5]["expected_recall"] == pytest.approx(1.0)


def test_waterfall_shows_made_up_vectors_and_no_values(run, doc):
    from hub.report import _splink_settings

    ((model,),) = q(run.db, "SELECT model FROM runs WHERE run_id = ?", [run.run_id])
    settings = _splink_settings(json.loads(model))
    data = waterfall_records(settings)
    assert {d["record_number"] for d in data} == {0, 1, 2}
    assert all(d["value_l"] == "" and d["value_r"] == "" for d in data)
    chart = doc["charts"]["waterfall"]["data"]["values"]
    assert all(d["value_l"] == "" and d["value_r"] == "" and d["sql_condition"] is None for d in chart)
    # the first made-up pair agrees on everything: its final score is the prior plus every top level's weight
    top = sum(c["levels"][0]["match_weight"] for c in doc["model"]["comparisons"])
    final = next(d for d in chart if d["record_number"] == 0 and d["column_name"] == "Final score")
    assert final["log2_bayes_factor"] == pytest.approx(doc["model"]["prior_match_weight"] + top, abs=0.01)


# ---------------------------------------------------------------- never a token, filter, hash or identifier


def _report_text(page: str) -> str:
    """The page without the three inlined chart libraries (each must be there, verbatim, once)."""
    for code in _chart_libraries().values():
        inlined = _script_js(code)
        assert page.count(inlined) == 1
        page = page.replace(inlined, "")
    return page


def test_no_report_contains_a_token_filter_hash_or_identifier(run, doc, pages, tmp_path):
    forbidden = run.forbidden
    tokens = {t for (t,) in q(run.db, "SELECT token FROM records")}
    assert len(tokens) > 400 and tokens <= forbidden
    assert sum(bool(re.fullmatch(r"\d{17}[\dX]", s)) for s in forbidden) > 100  # the ID numbers are in it
    paths = write_report(doc, tmp_path, langs=("zh",))
    texts = {"json": paths["json"].read_text("utf-8")}
    texts |= {lang: _report_text(page) for lang, page in pages.items()}
    for what, text in texts.items():
        leaked = find_leaks(forbidden, text)
        assert not leaked, f"{what}: {len(leaked)} forbidden strings, e.g. a {len(leaked[0])}-character one"
    # the scan finds what it looks for
    token, name = sorted(tokens)[0], next(s for s in sorted(forbidden) if re.fullmatch(r"[\u4e00-\u9fff]{3}", s))
    planted = texts["en"][:5000] + f"<td>{token}x</td><p>地址{name}</p>" + texts["en"][5000:]
    assert set(find_leaks(forbidden, planted)) >= {token, name}


def test_pages_request_nothing_outside_themselves(pages):
    for lang, page in pages.items():
        own = _report_text(page)
        targets = re.findall(r"""\b(?:src|href|action|srcset|poster)\s*=\s*["']([^"']*)["']""", own, re.I)
        assert targets and all(t.startswith(("#", "data:")) for t in targets), (lang, targets)
        assert not re.search(r"\b(?:src|href|action)\s*=\s*[^\s\"'>]", own, re.I), lang  # unquoted
        assert "@import" not in own and "url(" not in own
        assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in page


def test_pages_are_in_their_language(doc, pages):
    assert messages()["zh"]["sec.minimisation"] in pages["zh"]
    assert messages()["en"]["sec.minimisation"] in pages["en"]
    assert messages()["en"]["sec.minimisation"] not in pages["zh"]
    r1 = next(r for r in doc["clues"]["rules"] if r["id"] == "R1")
    assert r1["title"] in pages["zh"] and r1["title_en"] in pages["en"]
    with pytest.raises(ValueError):
        render_html(doc, "fr")


def test_a_result_made_with_another_rule_set_is_refused():
    rules = load_rules("judicial-assistance", load_schema("judicial-assistance"))
    check_rule_set(rules, [{"rule_set_digest": rules.digest}])
    with pytest.raises(StateError, match="--rules"):
        check_rule_set(rules, [{"rule_set_digest": "0" * 64}])


def test_an_invalid_document_is_refused(doc):
    bad = json.loads(json.dumps(doc))
    bad["datasets"][0]["counts"]["rows_read"] = -1
    del bad["audit"]
    with pytest.raises(ConfigError) as e:
        validate_document(bad, "report", "test")
    assert "$.datasets[0].counts.rows_read" in e.value.message and "audit" in e.value.message


# ---------------------------------------------------------------- the command


@pytest.fixture
def db_copy(run, tmp_path):
    """The run's database copied (its audit log lives beside it)."""
    d = tmp_path / "hub"
    d.mkdir()
    shutil.copy(run.db, d / "hub.duckdb")
    return d / "hub.duckdb"


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_cli_writes_both_files_refuses_to_overwrite_and_quotes_the_audit_head(run, db_copy, tmp_path):
    out = tmp_path / "report"
    res = invoke("report", "--db", str(db_copy), "--out", str(out), "--lang", "en", "--lang", "zh",
                 "--roster", str(run.roster), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["ok"] and summary["run_id"] == run.run_id and summary["audit_chain"] == "no_log"
    js = Path(summary["files"]["json"])
    assert js.name == f"report-{run.run_id}.json"
    pages = {lang: Path(p) for lang, p in summary["files"]["html"].items()}
    assert {lang: p.name for lang, p in pages.items()} == {lang: f"report-{run.run_id}.{lang}.html" for lang in LANGS}
    first = json.loads(js.read_text("utf-8"))
    validate_document(first, "report", str(js))
    assert first["federation"]["hub"]["operator"] == "test hub operators"
    assert first["audit"]["status"] == "no_log"  # nothing was audited before this command
    for lang, page in pages.items():  # both pages render the one document
        assert page.read_text("utf-8") == render_html(first, lang)
    res = invoke("report", "--db", str(db_copy), "--out", str(out), "--json")
    assert res.exit_code == 16, res.output  # the files exist: refused without --force
    log = db_copy.with_name("hub.duckdb.audit.jsonl")
    before = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    # the first report (ok) and the refused one (it had read the database) are in the log
    assert [(e["action"], e["outcome"]["status"]) for e in before] == [("report", "ok"), ("report", "error")]
    assert before[0]["refs"]["run_id"] == run.run_id
    assert {o["role"] for o in before[0]["outputs"]} == {"report_json", "report_html"}
    res = invoke("report", "--db", str(db_copy), "--out", str(tmp_path / "r2.html"), "--roster", str(run.roster),
                 "--json")
    assert res.exit_code == 0, res.output
    second = json.loads((tmp_path / "r2.json").read_text("utf-8"))
    assert second["audit"]["status"] == "ok" and second["audit"]["entries"] == 2
    assert second["audit"]["head_hash"] == before[-1]["hash"]
    assert (tmp_path / "r2.html").read_text("utf-8").count(before[-1]["hash"]) == 1
    assert len(log.read_text("utf-8").splitlines()) == 3  # and this report's own entry follows the head
    # an .html file holds one language
    res = invoke("report", "--db", str(db_copy), "--out", str(tmp_path / "r3.html"), "--lang", "zh", "--lang", "en")
    assert res.exit_code == 2 and "one language" in res.stderr


def test_a_broken_audit_log_is_reported_not_hidden(run, db_copy, tmp_path):
    assert invoke("report", "--db", str(db_copy), "--out", str(tmp_path / "a"), "--json-only").exit_code == 0
    assert invoke("report", "--db", str(db_copy), "--out", str(tmp_path / "b"), "--json-only").exit_code == 0
    log = db_copy.with_name("hub.duckdb.audit.jsonl")
    lines = log.read_text("utf-8").splitlines(keepends=True)
    assert len(lines) == 2
    log.write_text(lines[1], "utf-8")  # the first entry removed
    doc = gather_report(db_copy)
    assert doc["audit"]["status"] == "broken" and doc["audit"]["broken"]["position"] == 1
    assert doc["audit"]["entries"] == 0
    assert messages()["en"]["audit.status_broken"].split("{")[0] in render_html(doc, "en")


def test_cli_errors_have_their_exit_codes(db_copy, tmp_path):
    res = invoke("report", "--db", str(db_copy), "--run", "no-such-run", "--out", str(tmp_path), "--json")
    assert res.exit_code == 22 and json.loads(res.stdout)["error"] == "StateError"
    assert invoke("report", "--db", str(db_copy), "--out", str(tmp_path), "--lang", "fr").exit_code == 2
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    res = invoke("report", "--db", str(empty), "--out", str(tmp_path))
    assert res.exit_code == 22 and "nothing has been ingested" in res.stderr
