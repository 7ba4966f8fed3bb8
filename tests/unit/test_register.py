"""The clue register (agency_kit.register): recognition across runs, the status workflow, history."""

import datetime as dt
from decimal import Decimal

import duckdb
import pytest
from openpyxl import load_workbook

from agency_kit.register import (
    STATUSES,
    TRANSITIONS,
    ClueSighting,
    open_register,
    parse_amount,
    write_csv,
    write_sheets,
)
from linkage.errors import IntegrityError, OutputExistsError, StateError

NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
AGENCY = "county-procuratorate"
MAC = ["%032x" % (0xABC000 + i) for i in range(10)]


def sighting(i, rule="R1", row=None, clue_type="judicial_assistance", confidence="high", **kw):
    return ClueSighting(dataset="victims_2026", row_key_mac=MAC[i], rule_id=rule, clue_type=clue_type,
                        receiver=AGENCY, row_number=row or i + 2, rule_title=f"title {rule}", legal_basis="basis",
                        receiver_name="县人民检察院", other_datasets=("civil_affairs_dibao",), confidence=confidence,
                        **kw)


def record(reg, sightings, package="a" * 32, run="r1", now=NOW, agency=AGENCY):
    return reg.record_results(sightings, agency=agency, package_id=package, run_id=run, dataset="victims_2026",
                              actor="officer-a", now=now)


@pytest.fixture
def reg(tmp_path):
    with open_register(tmp_path / "reg.duckdb", create=True) as r:
        yield r


def test_second_run_with_new_tokens_adds_no_duplicates(reg):
    first = record(reg, [sighting(0), sighting(1), sighting(0, rule="R6", clue_type="referral")])
    assert (first.new, first.seen_again, first.already_imported) == (3, 0, False)
    assert first.clue_ids == ("C000001", "C000002", "C000003")
    # run 2: fresh tokens, but the same rows (row key MACs) and rules; row 0 moved, one new clue
    later = NOW + dt.timedelta(days=30)
    second = record(reg, [sighting(0, row=9, confidence="medium"), sighting(1), sighting(2)], package="b" * 32,
                    run="r2", now=later)
    assert (second.new, second.seen_again) == (1, 2)
    assert second.clue_ids == ("C000001", "C000002", "C000004")
    clues = {c["clue_id"]: c for c in reg.list()}
    assert len(clues) == 4
    c1 = clues["C000001"]
    assert (c1["first_seen_run"], c1["last_seen_run"], c1["times_seen"]) == ("r1", "r2", 2)
    assert c1["row_number"] == 9 and c1["confidence"] == "medium"
    assert c1["first_seen_at"] == "2026-06-01T09:00:00Z" and c1["last_seen_at"] == "2026-07-01T09:00:00Z"
    assert clues["C000003"]["last_seen_run"] == "r1"  # R6 was not seen again
    n = reg.con.execute("SELECT count(*) FROM sightings WHERE clue_id = 'C000001'").fetchone()[0]
    assert n == 2


def test_same_package_twice_changes_nothing(reg):
    first = record(reg, [sighting(0), sighting(1)])
    again = record(reg, [sighting(0), sighting(1)], now=NOW + dt.timedelta(hours=1))
    assert again.already_imported and (again.new, again.seen_again) == (0, 0)
    assert again.clue_ids == first.clue_ids
    assert {c["times_seen"] for c in reg.list()} == {1}


def test_one_package_may_carry_several_datasets(reg):
    record(reg, [sighting(0)])
    other = reg.record_results([ClueSighting("wage_claimants", MAC[0], "R4", "judicial_assistance", AGENCY, 2)],
                               agency=AGENCY, package_id="a" * 32, run_id="r1", dataset="wage_claimants",
                               actor="officer-a", now=NOW)
    assert (other.new, other.already_imported) == (1, False)
    assert len(reg.list()) == 2  # same row key MAC and package, but another dataset: another clue


def test_register_belongs_to_one_agency(reg):
    record(reg, [sighting(0)])
    with pytest.raises(StateError, match="belongs to agency"):
        record(reg, [sighting(1)], package="c" * 32, agency="county-court")


def test_only_the_mac_is_kept(reg):
    with pytest.raises(ValueError, match="hex"):
        record(reg, [ClueSighting("victims_2026", "AJ-001\x1f110101199003070011", "R1", "judicial_assistance",
                                  AGENCY, 2)])
    assert reg.list() == []


def test_status_workflow_enforced(reg):
    record(reg, [sighting(0), sighting(1), sighting(2, rule="R6", clue_type="referral")])
    t = NOW + dt.timedelta(days=1)
    with pytest.raises(StateError, match="cannot change to assisted"):
        reg.update("C000001", actor="a", status="assisted", amount="100", now=t)
    with pytest.raises(StateError, match="amount"):
        reg.update("C000001", actor="a", amount="100", now=t)  # not on a new clue
    reg.update("C000001", actor="officer-b", status="verifying", now=t)
    with pytest.raises(StateError, match="--amount"):
        reg.update("C000001", actor="officer-b", status="assisted", now=t)
    out = reg.update("C000001", actor="officer-b", status="assisted", amount="12,000.50", now=t)
    assert out["from_status"] == "verifying" and out["status"] == "assisted"
    with pytest.raises(StateError, match="--referral-dept"):
        reg.update("C000001", actor="officer-b", status="referred", now=t)
    reg.update("C000001", actor="officer-b", status="referred", referral_dept="县民政局", now=t)
    reg.update("C000001", actor="officer-c", status="closed", visit_dates=[dt.date(2026, 6, 2)], note="回访完毕",
               now=t + dt.timedelta(days=1))
    again = reg.update("C000001", actor="officer-c", visit_dates=[dt.date(2026, 6, 2)], now=t + dt.timedelta(days=1))
    assert again["changed"] == []  # a visit date already recorded is not recorded twice
    with pytest.raises(StateError, match="note"):
        reg.update("C000001", actor="a", status="verifying", now=t)  # reopening needs a reason
    with pytest.raises(StateError, match="note"):
        reg.update("C000002", actor="a", status="rejected", now=t)
    reg.update("C000002", actor="a", status="rejected", note="经核查不符合条件", now=t)
    with pytest.raises(StateError, match="cannot change"):
        reg.update("C000002", actor="a", status="assisted", amount="1", now=t)
    # a referral-type clue may be assisted without an amount (assistance need not be money)
    reg.update("C000003", actor="a", status="verifying", now=t)
    reg.update("C000003", actor="a", status="assisted", now=t)
    c = {x["clue_id"]: x for x in reg.list()}
    assert c["C000001"]["status"] == "closed" and c["C000001"]["assistance_amount"] == "12000.50"
    assert c["C000001"]["referral_dept"] == "县民政局" and c["C000001"]["visit_dates"] == ["2026-06-02"]
    assert c["C000001"]["notes"][0]["text"] == "回访完毕" and c["C000001"]["notes"][0]["actor"] == "officer-c"
    assert reg.counts() == {"new": 0, "verifying": 0, "assisted": 1, "referred": 0, "rejected": 1, "closed": 1}


def test_transition_table_is_complete():
    assert set(TRANSITIONS) == set(STATUSES)
    assert all(set(v) <= set(STATUSES) for v in TRANSITIONS.values())
    assert not any("new" in v for v in TRANSITIONS.values())


def test_bad_values(reg):
    record(reg, [sighting(0)])
    with pytest.raises(StateError, match="no clue"):
        reg.update("C000099", actor="a", status="verifying", now=NOW)
    with pytest.raises(ValueError):
        reg.update("C000001", actor="a", now=NOW)  # nothing to do
    with pytest.raises(ValueError):
        reg.update("C000001", actor=" ", status="verifying", now=NOW)
    with pytest.raises(StateError, match="future"):
        reg.update("C000001", actor="a", visit_dates=[dt.date(2026, 6, 2)], now=NOW)
    assert reg.history("C000001")[-1]["event"] == "status"  # nothing half-written
    for bad in ("-1", "abc", "1.234", "1e20", "NaN"):
        with pytest.raises(ValueError):
            parse_amount(bad)
    assert parse_amount("5000") == Decimal("5000.00") and parse_amount("1,234.5") == Decimal("1234.50")


def test_history_kept_and_chained(reg, tmp_path):
    record(reg, [sighting(0)])
    reg.update("C000001", actor="officer-b", status="verifying", now=NOW + dt.timedelta(days=1))
    reg.update("C000001", actor="officer-b", status="assisted", amount="3000", visit_dates=[dt.date(2026, 6, 1)],
               now=NOW + dt.timedelta(days=2))
    h = reg.history("C000001")
    assert [(x["event"], x["from_status"], x["to_status"], x["actor"]) for x in h] == [
        ("status", None, "new", "officer-a"),
        ("status", "new", "verifying", "officer-b"),
        ("amount", "verifying", "verifying", "officer-b"),
        ("status", "verifying", "assisted", "officer-b"),
        ("visit", "assisted", "assisted", "officer-b"),
    ]
    assert h[1]["at"] == "2026-06-02T09:00:00Z" and h[2]["detail"] == "3000.00 yuan"
    head = reg.verify_history()
    assert head == h[-1]["hash"]
    # a later run does not rewrite history
    record(reg, [sighting(0)], package="b" * 32, run="r2", now=NOW + dt.timedelta(days=40))
    assert reg.history("C000001") == h
    reg.con.execute("UPDATE history SET actor = 'someone' WHERE seq = 2")
    with pytest.raises(IntegrityError, match="entry 2"):
        reg.verify_history()


def test_history_deletion_detected(reg):
    record(reg, [sighting(0), sighting(1)])
    reg.update("C000001", actor="b", status="verifying", now=NOW)
    reg.con.execute("DELETE FROM history WHERE seq = 2")
    with pytest.raises(IntegrityError):
        reg.verify_history()


def test_open_register_states(tmp_path):
    with pytest.raises(StateError, match="no clue register"):
        with open_register(tmp_path / "none.duckdb"):
            pass
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    for kw in ({"read_only": True}, {"create": True}):
        with pytest.raises(StateError, match="not an aidlink clue register"):
            with open_register(other, **kw):
                pass
    (tmp_path / "text.duckdb").write_text("not a database")
    with pytest.raises(StateError, match="cannot open"):
        with open_register(tmp_path / "text.duckdb"):
            pass
    with open_register(tmp_path / "r.duckdb", create=True) as reg:
        record(reg, [sighting(0)])
    with open_register(tmp_path / "r.duckdb", read_only=True) as reg:
        assert len(reg.list(["new"], ["R1"])) == 1 and reg.list(["closed"]) == [] and reg.list(rule_ids=["R2"]) == []


def test_sheets_and_csv(tmp_path):
    rows = [["110101199003070011", "=1+1", Decimal("12.50"), None, 7, "bad\x01char"]]
    write_sheets(tmp_path / "a.xlsx", [("表", ("身份证号", "文本", "金额", "空", "行", "控制"), rows)])
    ws = load_workbook(tmp_path / "a.xlsx").active
    values = [c.value for c in ws[2]]
    assert values == ["110101199003070011", "=1+1", 12.5, None, 7, "badchar"]
    assert ws["B2"].data_type == "s" and ws.freeze_panes == "A2"
    with pytest.raises(OutputExistsError):
        write_sheets(tmp_path / "a.xlsx", [("表", ("x",), [])])
    write_csv(tmp_path / "a.csv", ("身份证号", "文本", "负数", "金额"), [["110101199003070011", "=1+1", "-5", 1]])
    raw = (tmp_path / "a.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    assert raw.decode("utf-8-sig").splitlines()[1] == "110101199003070011,'=1+1,'-5,1"
