"""Every planted case, end to end, through the real commands, on clean identifiers.

A small synthetic county is generated with every error rate at zero (no typo,
no missing or garbled ID, no duplicate row), so that linkage is not the
variable: what is tested is the rule set, the results, reveal and the clue
register.  ``synthetic.planting`` plants people for every variant of R1-R8
(R1 through a roster, a disability certificate or a 低保 enrolment; R4 through
hardship or a 终本 case; R5 for a student or a student's guardian; R6 for a
woman or a minor victim, or a woman known to the court only; R7 for a senior
or a grade 1-2 certificate; R8 closed early,
without the asset report or without the consumption restriction) and near
misses, among them the exclusions: a victim compensated in another case (X1)
and victims already assisted (X2).

The real ``agency-kit`` and ``linkage-hub`` commands run in this process
(click's runner: the same command objects as the console scripts, without a
Python start-up per step): every agency encodes each export, the hub ingests,
matches, applies the rules and writes one sealed result package per agency,
every agency reveals into its clue register and lists it.  Then:

* the revealed clues -- (rule, person, clue type, receiving agency, agency
  whose package carried it, the rows listed) -- are *exactly* the clues the
  truth (``synthetic.planting.evaluate_rules`` on the true records) expects,
  for every person of the county, planted or not; every planted positive is
  among them and no planted near miss is;
* the same run with the exclusions removed from the rule set gives the
  excluded clues back, and only clues of people with a compensated or an
  assisted victim record: the exclusions are what removes them;
* no agency's result package holds a token of another agency (checked against
  every agency's vault), and no command's JSON summary holds any token;
* an edited result package, and another agency's package, are refused by
  reveal (exit 20) with nothing written and the register unchanged;
* a second run (fresh encode: new tokens, new packages; a new hub database)
  is recognised by the registers: no new clue, every clue seen twice, an
  officer's status change kept.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from synthetic import errors as er
from synthetic.county import DATASET_AGENCY, generate_county, write_county
from synthetic.planting import RULES

# 80-120 s on a shared two-core machine (two full passes and a third rules/results/reveal pass;
# linkage-hub match alone takes some 15 s whatever the size): marked slow, it still runs in CI.
pytestmark = pytest.mark.slow

PEOPLE = 600
SEED = 5
PER_RULE = 3  # one planted person per variant at least (R1 and R8 have three variants)
AS_OF = "2024-06-30"
PASSPHRASE = "planted-cases-passphrase"
RECEIVER_ONLY = ("womens-federation",)  # receives clues, sends no data
PROCURATORATE, COURT, EDUCATION = "county-procuratorate", "county-court", "education-bureau"
HEX32 = re.compile(r"\b[0-9a-f]{32}\b")
ENV = {"AIDLINK_PASSPHRASE": PASSPHRASE, "AIDLINK_AUDIT_LOG": None, "AIDLINK_REGISTER": None}

#: ``truth/planted.csv`` notes: every variant of every rule must have a planted positive.
VARIANTS = {
    "R1": ("grave injury, uncompensated, already on a roster",
           "grave injury, uncompensated, disability certificate, on no roster",
           "grave injury, uncompensated, household enrolled on 低保"),
    "R2": ("loss >= 10000, uncompensated, hardship",),
    "R3": ("zhongben applicant in hardship",),
    "R4": ("supported unrecovered wage claim, in hardship",
           "supported unrecovered wage claim, zhongben case as applicant, no roster"),
    "R5": ("R1 for a student", "R1 for a student's guardian (the dependant is a student)"),
    "R6": ("R2 clue with a victim record of a woman", "R1 clue with a victim record of a minor",
           "R3 clue for a woman known to the court only (no victim record)"),
    "R7": ("injured uncompensated senior (60+), in no roster",
           "injured uncompensated holder of a grade 1-2 certificate, in no roster"),
    "R8": ("zhongben hardship applicant: closed < 3 months after filing",
           "zhongben hardship applicant: no asset report",
           "zhongben hardship applicant: no consumption restriction"),
}
#: Near misses that only an exclusion turns away: (rule, note substring, exclusion).
EXCLUDED_NEAR_MISSES = (
    ("R1", "another case compensated (X1)", "X1"),
    ("R1", "but already assisted", "X2"),
    ("R3", "already assisted as a victim (X2)", "X2"),
)


# ---------------------------------------------------------------- running the commands


def _cli(tool: str):
    if tool == "agency-kit":
        from agency_kit.cli import cli
    else:
        from hub.cli import cli
    return cli


def run(tool: str, *args, expect: int = 0):
    """Run one command with --json in this process; the JSON summary (or the result when ``expect`` != 0)."""
    result = CliRunner().invoke(_cli(tool), [*map(str, args), "--json"], env=ENV, catch_exceptions=False)
    assert result.exit_code == expect, f"{tool} {args[0]}: exit {result.exit_code}\n{result.stderr[-3000:]}"
    if expect:
        return result
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"{tool} {args[0]} printed more than one JSON line"
    return json.loads(lines[0])


@dataclass
class Dataset:
    name: str
    agency: str
    kind: str
    export: Path
    mapping: Path


@dataclass
class Run:
    """One encode -> ingest -> match -> rules -> results -> reveal pass."""

    packages: dict[str, str] = field(default_factory=dict)  # dataset -> package id
    vaults: dict[str, Path] = field(default_factory=dict)   # dataset -> vault
    summaries: list[dict] = field(default_factory=list)      # every --json summary, for the leak check
    rules: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    reveals: list[dict] = field(default_factory=list)
    db: Path | None = None
    clues: list[dict] = field(default_factory=list)        # every register's clues after the pass
    exports: dict[str, Path] = field(default_factory=dict)  # dataset -> the export encoded in this pass
    person_of_row: dict[tuple[str, int], int] = field(default_factory=dict)  # (dataset, file row) -> person


class County:
    """The federation, the exports and the truth; :meth:`full_pass` makes one pass."""

    def __init__(self, root: Path) -> None:
        self.root = root
        clean = {ds: er.ErrorRates() for ds in DATASET_AGENCY}
        self.county = generate_county(PEOPLE, SEED, per_rule=PER_RULE, error_rates=clean)
        paths = write_county(self.county, root / "county", formats="csv", population=False)
        self.datasets: dict[str, Dataset] = {}
        for name, mapping in paths["mappings"].items():
            doc = json.loads(mapping.read_text("utf-8"))
            self.datasets[name] = Dataset(name, doc["agency"], doc["dataset_kind"],
                                          paths["exports"][doc["dataset_kind"]], mapping)
        self.agencies: dict[str, set[str]] = defaultdict(set)
        for d in self.datasets.values():
            self.agencies[d.agency].add(d.kind)
        for agency in RECEIVER_ONLY:
            self.agencies.setdefault(agency, set())
        keys = root / "keys"
        self.secret, self.roster, self.hub_dir = keys / "secret.key", root / "roster.json", root / "hub-keys"
        self.hub_key = self.hub_dir / "hub.identity.key"
        self.identity = {a: keys / f"{a}.identity.key" for a in self.agencies}
        run("agency-kit", "keygen-secret", "--out", self.secret)
        pubs = []
        for agency, kinds in sorted(self.agencies.items()):
            run("agency-kit", "keygen-identity", "--agency", agency, "--out", keys,
                *[a for k in sorted(kinds) for a in ("--dataset", k)])
            pubs += ["--agency", keys / f"{agency}.pub.json"]
        run("linkage-hub", "keygen", "--out", self.hub_dir, "--operator", "test hub operators (no linkage secret)")
        run("agency-kit", "roster-build", "--federation", "planted-county", "--schema", "judicial-assistance",
            "--hub", self.hub_dir / "hub.pub.json", *pubs, "--sign-with", self.hub_key, "--out", self.roster)
        self.registers = {a: root / "clues" / a / "register.duckdb" for a in self.agencies}
        # truth
        self.person_of_row = {(r.dataset, int(r.file_row)): int(r.person_id)
                              for r in self.county.person_of_row.itertuples()}
        self.rows_of: dict[int, set[tuple[str, int]]] = defaultdict(set)
        for (ds, row), person in self.person_of_row.items():
            self.rows_of[person].add((ds, row))

    def full_pass(self, label: str, *, reverse: tuple[str, ...] = ()) -> Run:
        """Encode every export (the datasets in ``reverse`` from a copy with the data rows in
        reverse order, as when an export is re-sorted), link, apply the rules, write the
        results and reveal them into the agencies' registers."""
        out, r = self.root / label, Run(person_of_row=dict(self.person_of_row))
        for name, d in self.datasets.items():
            r.exports[name] = d.export
        for kind in reverse:  # a dataset kind; the guardians' mapping reads the students' export
            source = self.datasets[kind].export
            n = reverse_rows(source, out / "exports" / source.name)
            for name in (ds for ds, d in self.datasets.items() if d.kind == kind):
                r.exports[name] = out / "exports" / source.name
                for row in range(2, n + 2):
                    r.person_of_row[(name, n + 3 - row)] = self.person_of_row[(name, row)]
        for name, d in sorted(self.datasets.items()):
            s = run("agency-kit", "encode", "--input", r.exports[name], "--mapping", d.mapping, "--secret", self.secret,
                    "--identity", self.identity[d.agency], "--roster", self.roster,
                    "--out", out / "packages" / f"{name}.aidpkg", "--reference-date", AS_OF, "--workers", 1)
            assert s["counts"]["rejected"] == 0, (name, s["counts"])
            r.packages[name], r.vaults[name] = s["package_id"], out / "packages" / f"{name}.vault"
            r.summaries.append(s)
        db = out / "hub" / "hub.duckdb"  # ingest makes the folder
        r.summaries.append(run("linkage-hub", "ingest", "--db", db, "--roster", self.roster, "--hub-key", self.hub_key,
                               *sorted((out / "packages").glob("*.aidpkg"))))
        r.summaries.append(run("linkage-hub", "match", "--db", db, "--threads", 1))
        r.rules = run("linkage-hub", "rules", "--db", db)
        r.results = run("linkage-hub", "results", "--db", db, "--roster", self.roster, "--hub-key", self.hub_key,
                        "--out", out / "results")
        r.summaries += [r.rules, r.results]
        r.db = db
        self.reveal(r, out, self.registers)
        return r

    def reveal(self, r: Run, out: Path, registers: dict[str, Path]) -> None:
        for p in r.results["packages"]:
            for name, d in sorted(self.datasets.items()):
                if d.agency != p["agency"] or not p["rows_by_package"].get(r.packages[name]):
                    continue
                s = run("agency-kit", "reveal", "--result", p["file"], "--identity", self.identity[d.agency],
                        "--roster", self.roster, "--vault", r.vaults[name], "--input", r.exports[name],
                        "--mapping", d.mapping, "--out", out / "clues" / d.agency / f"{name}.clues.xlsx",
                        "--csv", out / "clues" / d.agency / f"{name}.clues.csv",
                        "--register", registers[d.agency], "--actor", "officer-a")
                assert s["revealed"] == p["rows_by_package"][r.packages[name]]
                r.reveals.append(s)
                r.summaries.append(s)

    def registered(self, registers: dict[str, Path] | None = None) -> list[dict]:
        """Every clue of every register, with ``holder`` = the register's agency."""
        out = []
        for agency, path in sorted((registers or self.registers).items()):
            if path.exists():
                listed = run("agency-kit", "clues", "list", "--register", path)
                out += [{**c, "holder": agency} for c in listed["clues"]]
        return out

    # ---- truth

    def expected(self) -> set[tuple[str, int, str, str, str]]:
        """(rule, person, clue type, receiving agency, holder) for every clue the true records make hold."""
        out = set()
        for e in self.county.expected_clues.itertuples():
            out.add((e.rule_id, int(e.person_id), e.clue_type, e.receiver, self.holder(e.rule_id, int(e.person_id))))
        return out

    def holder(self, rule: str, person: int) -> str:
        """The agency whose tokens carry the clue: the rule set's tokens_from, first holder of a record."""
        if rule in ("R1", "R2", "R4", "R7"):
            return PROCURATORATE
        if rule in ("R3", "R6"):  # tokens_from: procuratorate, else court
            mine = {ds for ds, _ in self.rows_of[person]}
            return PROCURATORATE if mine & {"procuratorate_victims", "wage_claimants"} else COURT
        return EDUCATION if rule == "R5" else COURT

    def holder_rows(self, rule: str, person: int) -> set[tuple[str, int]]:
        """Every row of the holder agency for ``person``: a clue lists all the holder's tokens in the cluster."""
        holder = self.holder(rule, person)
        return {(ds, row) for ds, row in self.rows_of[person] if self.datasets[ds].agency == holder}

    def found(self, clues: list[dict], person_of_row: dict | None = None) -> set[tuple[str, int, str, str, str]]:
        who = person_of_row or self.person_of_row
        return {(c["rule_id"], who[(c["dataset"], c["row_number"])], c["clue_type"], c["receiver"], c["holder"])
                for c in clues}


def reverse_rows(source: Path, target: Path) -> int:
    """Copy a CSV export with its data rows in reverse order (same encoding, CRLF); the number of data rows."""
    data = source.read_bytes()
    bom = data.startswith(b"\xef\xbb\xbf")
    head, *rows = data[3 if bom else 0:].rstrip(b"\r\n").split(b"\r\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"\r\n".join([head, *reversed(rows)]) + b"\r\n")
    return len(rows)


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    return County(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def first(county):
    r = county.full_pass("run-1")
    r.clues = county.registered()
    return r


# ---------------------------------------------------------------- the tests


def test_every_planted_case_yields_exactly_its_clue(county, first):
    planted = county.county.planted
    # the planting covers every variant of every rule, and the exclusions
    for rule, notes in VARIANTS.items():
        pos = planted[(planted["rule_id"] == rule) & (planted["kind"] == "positive")]
        for note in notes:
            assert (pos["note"] == note).any(), (rule, note)
    for rule, note, _ in EXCLUDED_NEAR_MISSES:
        assert ((planted["rule_id"] == rule) & planted["note"].str.contains(note, regex=False)).any(), note

    expected, found = county.expected(), county.found(first.clues)
    by_key = {(rule, person): (rule, person, ctype, receiver, holder)
              for rule, person, ctype, receiver, holder in found}
    for p in planted.itertuples():
        key = (p.rule_id, int(p.person_id))
        if p.kind == "positive":
            want = (p.rule_id, int(p.person_id), RULES[p.rule_id].clue_type, RULES[p.rule_id].receiver,
                    county.holder(p.rule_id, int(p.person_id)))
            assert by_key.get(key) == want, f"planted {p.rule_id} ({p.note}): got {by_key.get(key)}, want {want}"
        else:
            assert key not in by_key, f"near miss {p.rule_id} ({p.note}) yielded a clue"
    # every planted person gets exactly the clues the truth gives it -- no more, no fewer
    for person in set(planted["person_id"].astype(int)):
        mine = {f for f in found if f[1] == person}
        assert mine == {e for e in expected if e[1] == person}, person
    # and so does everyone else: with clean identifiers nothing is lost or invented
    assert found == expected, (sorted(expected - found)[:10], sorted(found - expected)[:10])
    assert {rule for rule, *_ in found} == set(RULES)
    # a clue lists every row its holder has of the person (one clue per row in the register)
    rows = defaultdict(set)
    for c in first.clues:
        rows[(c["rule_id"], county.person_of_row[(c["dataset"], c["row_number"])])].add(
            (c["dataset"], c["row_number"]))
    for (rule, person), listed in rows.items():
        assert listed == county.holder_rows(rule, person), (rule, person)
    assert all(c["status"] == "new" and c["times_seen"] == 1 for c in first.clues)


def test_rules_output_says_who_receives_and_who_carries(county, first):
    summary = first.rules
    # persons per rule and receiver, and per agency whose package carries them, as the truth has them
    persons, carried = defaultdict(int), defaultdict(lambda: defaultdict(int))
    for rule, _person, _ctype, receiver, holder in county.expected():
        persons[(rule, receiver)] += 1
        carried[rule][holder] += 1
    assert {(r, a): n for r, by in summary["clues"].items() for a, n in by.items()} == dict(persons)
    assert summary["delivered"] == {r: dict(by) for r, by in carried.items()}
    # R6 is for the women's federation and travels in the procuratorate's and the court's packages
    d6 = summary["delivered"]["R6"]
    assert d6[PROCURATORATE] > 0 and d6[COURT] > 0 and "womens-federation" not in d6
    result = CliRunner().invoke(_cli("linkage-hub"), ["rules", "--db", str(first.db)], env=ENV,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines()}
    n6 = summary["clues"]["R6"]["womens-federation"]
    assert lines["R6"] == (f"R6: {n6} clue(s) for womens-federation, delivered in {COURT}'s result package "
                           f"({d6[COURT]}) and in {PROCURATORATE}'s result package ({d6[PROCURATORATE]}), "
                           "to be forwarded")
    n1 = summary["clues"]["R1"][PROCURATORATE]
    assert lines["R1"] == f"R1: {n1} clue(s) for {PROCURATORATE}, delivered in its own result package"
    n7 = summary["clues"]["R7"]["civil-affairs-bureau"]
    assert lines["R7"] == (f"R7: {n7} clue(s) for civil-affairs-bureau, delivered in {PROCURATORATE}'s result "
                           f"package ({n7}), to be forwarded")


def test_the_exclusions_remove_the_clues(county, first, tmp_path_factory):
    assert first.rules["excluded"]["R1"]["X1"] > 0
    assert first.rules["excluded"]["R1"]["X2"] > 0
    assert first.rules["excluded"]["R3"]["X2"] > 0
    # the same clusters, the rule set without X1 and X2: the excluded clues come back
    root = tmp_path_factory.mktemp("no-exclusions")
    doc = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "judicial-assistance.rules.json")
                     .read_text("utf-8"))
    doc["id"] = "judicial-assistance-without-exclusions"
    doc["rules"] = [r for r in doc["rules"] if r["clue_type"] != "exclusion"]
    rules = root / "no-exclusions.rules.json"
    rules.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    db = root / "hub.duckdb"
    shutil.copyfile(first.db, db)
    summary = run("linkage-hub", "rules", "--db", db, "--rules", rules)
    assert summary["excluded"] == {}
    results = run("linkage-hub", "results", "--db", db, "--roster", county.roster, "--hub-key", county.hub_key,
                  "--rules", rules, "--out", root / "results")
    r = Run(packages=first.packages, vaults=first.vaults, exports=first.exports, results=results)
    registers = {a: root / "clues" / a / "register.duckdb" for a in county.agencies}
    county.reveal(r, root, registers)
    without = {f for f in county.found(county.registered(registers)) if f[0] in ("R1", "R2", "R3", "R4")}
    real = {f for f in county.found(first.clues) if f[0] in ("R1", "R2", "R3", "R4")}
    assert real <= without
    victims = county.county.facts["procuratorate_victims"]
    compensated = set(victims.loc[victims["compensated"], "person_id"])
    assisted = set(victims.loc[victims["assisted"], "person_id"])
    for rule, person, *_ in without - real:  # only what an exclusion explains came back
        assert person in assisted or (rule in ("R1", "R2") and person in compensated), (rule, person)
    came_back = {(rule, person) for rule, person, *_ in without - real}
    planted = county.county.planted
    for rule, note, _ in EXCLUDED_NEAR_MISSES:
        people = planted.loc[(planted["rule_id"] == rule) & planted["note"].str.contains(note, regex=False),
                             "person_id"]
        assert len(people)
        for person in people:
            assert (rule, int(person)) in came_back, (rule, note, person)


def _tokens_of_package(county, p) -> list[str]:
    from agency_kit.reveal import open_results
    from linkage.keyfile import read_identity_file
    from linkage.roster import load_roster

    identity = read_identity_file(county.identity[p["agency"]], PASSPHRASE, role="agency")
    return open_results(p["file"], identity=identity, roster=load_roster(county.roster)).table.column(
        "token").to_pylist()


def _vaults(county, r) -> dict[str, list]:
    from agency_kit.reveal import identity_vault_key
    from agency_kit.vault import open_vault
    from linkage.keyfile import read_identity_file

    out = defaultdict(list)
    for name, path in r.vaults.items():
        agency = county.datasets[name].agency
        key = identity_vault_key(read_identity_file(county.identity[agency], PASSPHRASE, role="agency"))
        out[agency].append(open_vault(path, key=key))
    return out


def test_no_agency_gets_another_agencys_token(county, first):
    vaults = _vaults(county, first)
    packages = first.results["packages"]
    assert {p["agency"] for p in packages} == {PROCURATORATE, COURT, EDUCATION}
    everyone = set()
    for p in packages:
        tokens = _tokens_of_package(county, p)
        assert tokens
        for t in tokens:
            assert any(t in v for v in vaults[p["agency"]]), f"a token in {p['agency']}'s package is not its own"
            others = [a for a, vs in vaults.items() if a != p["agency"] and any(t in v for v in vs)]
            assert not others, f"a token in {p['agency']}'s package is {others}'s"
        everyone |= set(tokens)
        assert set(p["in_reply_to"]) <= {first.packages[n] for n, d in county.datasets.items()
                                         if d.agency == p["agency"]}
    # no JSON summary of any command carries a token
    printed = json.dumps(first.summaries)
    assert not set(HEX32.findall(printed)) & everyone


def test_an_edited_result_package_is_refused(county, first, tmp_path):
    proc = next(p for p in first.results["packages"] if p["agency"] == PROCURATORATE)
    court = next(p for p in first.results["packages"] if p["agency"] == COURT)
    d = county.datasets["procuratorate_victims"]
    register = county.registers[PROCURATORATE]
    before = run("agency-kit", "clues", "list", "--register", register)
    data = bytearray(Path(proc["file"]).read_bytes())
    edited = []
    for i, at in enumerate((len(data) // 2, len(data) - 40, 200)):
        copy = bytearray(data)
        copy[at] ^= 0x01
        path = tmp_path / f"edited-{i}.aidpkg"
        path.write_bytes(bytes(copy))
        edited.append(path)
    for result in [*edited, Path(court["file"])]:  # edited, or sealed to another agency
        out = tmp_path / f"{result.stem}.clues.xlsx"
        refused = run("agency-kit", "reveal", "--result", result, "--identity", county.identity[PROCURATORATE],
                      "--roster", county.roster, "--vault", first.vaults[d.name], "--input", d.export,
                      "--mapping", d.mapping, "--out", out, "--csv", out.with_suffix(".csv"),
                      "--register", register, "--actor", "officer-a", expect=20)
        assert refused.stderr.startswith("Error: integrity check failed")  # one opaque message, whatever failed
        assert json.loads(refused.stdout) == {"ok": False, "error": "IntegrityError", "exit_code": 20,
                                              "message": "integrity check failed: the file is not authentic"}
        assert not out.exists() and not out.with_suffix(".csv").exists()
    after = run("agency-kit", "clues", "list", "--register", register)
    assert after["clues"] == before["clues"]


def test_a_second_run_is_recognised_without_duplicates(county, first):
    register = county.registers[PROCURATORATE]
    chosen = next(c for c in first.clues if c["holder"] == PROCURATORATE and c["rule_id"] == "R1")
    run("agency-kit", "clues", "update", chosen["clue_id"], "--actor", "officer-b", "--status", "verifying",
        "--register", register)
    # a fresh encode of the same people; two exports were re-sorted meanwhile, so rows moved
    second = county.full_pass("run-2", reverse=("procuratorate_victims", "education_students"))
    assert second.results["run_id"] != first.results["run_id"]
    assert not set(second.packages.values()) & set(first.packages.values())
    # fresh tokens: none of the second run's result tokens is one of the first's
    tokens_1 = {t for p in first.results["packages"] for t in _tokens_of_package(county, p)}
    tokens_2 = {t for p in second.results["packages"] for t in _tokens_of_package(county, p)}
    assert tokens_2 and not tokens_1 & tokens_2
    for s in second.reveals:
        assert s["register"]["new"] == 0 and s["register"]["seen_again"] == s["revealed"], s["register"]
    again = county.registered()
    assert len(again) == len(first.clues)
    # the same clues (same rows of the same people), each once, found by the row key although the rows moved
    before = {(c["holder"], c["clue_id"]): c for c in first.clues}  # clue ids are per register
    moved = 0
    for c in again:
        old = before[(c["holder"], c["clue_id"])]
        assert (c["holder"], c["dataset"], c["rule_id"]) == (old["holder"], old["dataset"], old["rule_id"])
        assert second.person_of_row[(c["dataset"], c["row_number"])] == \
            first.person_of_row[(old["dataset"], old["row_number"])]
        moved += c["row_number"] != old["row_number"]
        assert c["times_seen"] == 2 and c["first_seen_run"] == first.results["run_id"]
        assert c["last_seen_run"] == second.results["run_id"]
    assert moved > 0
    assert county.found(again, second.person_of_row) == county.found(first.clues, first.person_of_row)
    # an officer's work survives the new run
    mine = (PROCURATORATE, chosen["clue_id"])
    assert next(c for c in again if (c["holder"], c["clue_id"]) == mine)["status"] == "verifying"
    assert all(c["status"] == "new" for c in again if (c["holder"], c["clue_id"]) != mine)
    # the clue lists of the second run name the rows the register now points at
    listed = set()
    for s in second.reveals:
        if s["agency"] != PROCURATORATE:
            continue
        with open(s["outputs"]["csv"], encoding="utf-8-sig") as f:
            listed |= {(s["dataset"], int(row["源文件行号"]), row["规则编号"], row["线索编号"]) for row in csv.DictReader(f)}
    assert listed == {(c["dataset"], c["row_number"], c["rule_id"], c["clue_id"]) for c in again
                      if c["holder"] == PROCURATORATE}
