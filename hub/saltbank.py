"""Salt banks: linking a record whose salt (birth year) is missing.

A name filter salted with the birth year (the hardening that stops the
frequency, pattern-mining and graph attacks on names) can only be compared
with a filter under the same salt.  A victim record with neither an ID number
nor a birth date has no year, so its name could not be compared at all.  For
such a record the agency sends a *salt bank* instead (linkage/encode.py,
section 7): the name filter under every year of the bank, slots shuffled
afresh per record.

The hub resolves a bank pair by pair, before prediction:

1. for every blocked pair with a bank on one side and a plain filter of the
   same field on the other, the slot most similar to the other side's filter
   (Dice, ties to the lower slot) -- for a true match that is the slot of the
   true year, and the slot order tells the hub nothing about which year it is;
   for a pair with banks on *both* sides (two records without a year), a slot
   of each holding the identical filter -- the same name under the same,
   unknown, year; two banks share no slot when the names differ at all;
2. a *stand-in* record per distinct (record, chosen slot of each bank field):
   the record with those slots as its filters, under a new ``rid`` above every
   real one;
3. the pair is scored as (other record, stand-in), or (stand-in, stand-in) -- so Splink sees ordinary
   records and ordinary pairs, whatever the engine;
4. afterwards every stand-in ``rid`` is mapped back to its record.

What a resolved pair costs in privacy: the hub learns that the two records'
best slots agree -- that they look like the same name under the same salt --
which is what the link itself says; it never learns a year.  Two banks
whose names differ (even by one character, where a plain pair would compare
by Dice) keep a null name comparison.
Training (u sampling, EM) sees the records as ingested, never a stand-in.
"""

from __future__ import annotations

from collections.abc import Sequence

from .comparisons import STAND_IN_FLAG
from .store import RecordLayout, bank_table, q

STAND_INS = "aidlink_stand_ins"
STAND_IN_OF = "aidlink_stand_in_of"
BEST_SLOTS = "aidlink_best_slots"


def _intersection(layout: RecordLayout, field: str, a: str, b: str) -> str:
    f = layout.filter(field)
    return " + ".join(f"bit_count({a}.{q(w)} & {b}.{q(w)})" for w in f.words)


def best_slot_sql(layout: RecordLayout, field: str, blocked: str, records: str, bank_side: str,
                  catalog: str = "") -> str:
    """Input: ``blocked(match_key, join_key_l, join_key_r)``, ``records``, ``bank_<field>``.
    Output: a query of (join_key_l, join_key_r, slot): for each pair whose ``bank_side`` ("l" or
    "r") record has a bank of ``field`` and whose other record a filter of it, the bank slot
    with the highest Dice against that filter (ties: the lowest slot).  ``catalog``: where the
    bank tables are (e.g. ``"hub."`` for an attached hub database)."""
    if bank_side not in ("l", "r"):
        raise ValueError("bank_side is l or r")
    other = "r" if bank_side == "l" else "l"
    f = layout.filter(field)
    dice = (f"CAST(2 * ({_intersection(layout, field, 'b', 'o')}) AS DOUBLE)"
            f" / greatest(b.{q(f.popcount)} + o.{q(f.popcount)}, 1)")
    return (
        f"SELECT p.join_key_l, p.join_key_r, arg_max(b.slot, {dice} * 1e6 - b.slot * 1e-3) AS slot"
        f" FROM {q(blocked)} p JOIN {catalog}{q(bank_table(field))} b ON b.rid = p.join_key_{bank_side}"
        f" JOIN {records} o ON o.rid = p.join_key_{other}"
        f" WHERE o.{q(f.popcount)} IS NOT NULL"
        f" GROUP BY p.join_key_l, p.join_key_r"
    )


def twin_slots_sql(layout: RecordLayout, field: str, blocked: str, catalog: str = "") -> str:
    """Input: ``blocked``, ``bank_<field>``.  Output: a query of (join_key_l, join_key_r, slot_l,
    slot_r): for each pair with a bank of ``field`` on *both* sides, a slot of each that hold the
    identical filter -- the same value under the same salt, whichever year that is (the first such
    pair of slots by slot number).  Pairs whose banks share no filter are left out: their values
    differ (or differ by a typo, which two banks cannot tell), and they stay null."""
    f = layout.filter(field)
    bank = f"{catalog}{q(bank_table(field))}"
    same = " AND ".join(f"b.{q(c)} = a.{q(c)}" for c in (f.popcount, *f.words))
    order = "CAST(a.slot AS INTEGER) * 1024 + b.slot"  # slot is SMALLINT
    return (
        f"SELECT p.join_key_l, p.join_key_r, arg_min(a.slot, {order}) AS slot_l, arg_min(b.slot, {order}) AS slot_r"
        f" FROM {q(blocked)} p JOIN {bank} a ON a.rid = p.join_key_l"
        f" JOIN {bank} b ON b.rid = p.join_key_r AND {same}"
        f" GROUP BY p.join_key_l, p.join_key_r"
    )


def best_slots_sql(layout: RecordLayout, blocked: str, records: str, output: str = BEST_SLOTS,
                   catalog: str = "") -> str:
    """Input: as :func:`best_slot_sql`.  Output: table ``output(join_key_l, join_key_r, bank_rid,
    slot_<field>...)``: per pair with a bank on one side, one row (the side is ``bank_rid``), the
    slot that agrees best with the other side's filter (:func:`best_slot_sql`); per pair with banks
    on both sides, one row per side, slots holding the same filter (:func:`twin_slots_sql`).
    ``slot_<field>`` is null where that field has no slot chosen."""
    fields = list(layout.banks)
    out = []
    for side in ("l", "r"):
        sub = [(f"s{i}", f"{best_slot_sql(layout, fld, blocked, records, side, catalog)} UNION ALL"
                         f" SELECT join_key_l, join_key_r, slot_{side} AS slot"
                         f" FROM ({twin_slots_sql(layout, fld, blocked, catalog)})")
               for i, fld in enumerate(fields)]
        keys = " UNION ".join(f"SELECT join_key_l, join_key_r FROM ({sql})" for _, sql in sub)
        joins = " ".join(f"LEFT JOIN ({sql}) {a} ON {a}.join_key_l = k.join_key_l AND {a}.join_key_r = k.join_key_r"
                         for a, sql in sub)
        slots = ", ".join(f"{a}.slot AS {q('slot_' + fld)}" for (a, _), fld in zip(sub, fields, strict=True))
        out.append(f"SELECT k.join_key_l, k.join_key_r, k.join_key_{side} AS bank_rid, {slots}"
                   f" FROM ({keys}) k {joins}")
    return f"CREATE OR REPLACE TABLE {q(output)} AS {' UNION ALL '.join(out)}"


def stand_ins_sql(layout: RecordLayout, columns: Sequence[str], records: str, best: str = BEST_SLOTS,
                  output: str = STAND_INS, catalog: str = "") -> str:
    """Input: ``best`` (:func:`best_slots_sql`), ``records``, ``bank_<field>``; bound: the first
    stand-in rid minus one.  Output: table ``output`` with ``columns`` (the model's input
    columns, ``rid`` first; the stand-in flag true) plus ``of_rid``: one stand-in per distinct (record, slots), its bank
    fields' words and popcounts taken from the chosen slots (null where no slot was chosen)."""
    fields = list(layout.banks)
    slot_cols = ", ".join(q(f"slot_{f}") for f in fields)
    replaced: dict[str, str] = {}
    joins = []
    for i, fld in enumerate(fields):
        f = layout.filter(fld)
        alias = f"b{i}"
        joins.append(f"LEFT JOIN {catalog}{q(bank_table(fld))} {alias} ON {alias}.rid = d.bank_rid"
                     f" AND {alias}.slot = d.{q('slot_' + fld)}")
        for c in (*f.words, f.popcount):
            replaced[c] = f"{alias}.{q(c)}"
    sel = []
    for c in columns:
        if c == STAND_IN_FLAG:
            sel.append(f"TRUE AS {q(c)}")
        elif c == "rid":
            sel.append("CAST(? + row_number() OVER (ORDER BY d.bank_rid, "
                       + ", ".join(f"d.{q('slot_' + f)}" for f in fields) + ") AS BIGINT) AS rid")
        elif c in replaced:
            sel.append(f"{replaced[c]} AS {q(c)}")
        else:
            sel.append(f"x.{q(c)}")
    return (
        f"CREATE OR REPLACE TABLE {q(output)} AS SELECT {', '.join(sel)}, d.bank_rid AS of_rid, "
        + ", ".join(f"d.{q('slot_' + f)}" for f in fields)
        + f" FROM (SELECT DISTINCT bank_rid, {slot_cols} FROM {q(best)}) d"
        f" JOIN {records} x ON x.rid = d.bank_rid {' '.join(joins)}"
    )


def rewrite_pairs_sql(layout: RecordLayout, blocked: str, best: str = BEST_SLOTS, stand_ins: str = STAND_INS,
                      output: str = "aidlink_blocked_resolved") -> str:
    """Input: ``blocked``, ``best``, ``stand_ins``.  Output: table ``output`` like ``blocked``, each
    record of a pair that has a row in ``best`` replaced by its stand-in for that pair (one side, or
    both when both sides are banks); the smaller rid stays left (a stand-in's is above every record's)."""
    fields = list(layout.banks)

    def side(x: str) -> str:
        on = " AND ".join(f"s{x}.{q('slot_' + f)} IS NOT DISTINCT FROM b{x}.{q('slot_' + f)}" for f in fields)
        return (f" LEFT JOIN {q(best)} b{x} ON b{x}.join_key_l = p.join_key_l AND b{x}.join_key_r = p.join_key_r"
                f" AND b{x}.bank_rid = p.join_key_{x}"
                f" LEFT JOIN {q(stand_ins)} s{x} ON s{x}.of_rid = b{x}.bank_rid AND {on}")

    left, right = "coalesce(sl.rid, p.join_key_l)", "coalesce(sr.rid, p.join_key_r)"
    return (
        f"CREATE OR REPLACE TABLE {q(output)} AS"
        f" SELECT p.match_key, least({left}, {right}) AS join_key_l, greatest({left}, {right}) AS join_key_r"
        f" FROM {q(blocked)} p{side('l')}{side('r')}"
    )


def stand_in_map_sql(stand_ins: str = STAND_INS, output: str = STAND_IN_OF) -> str:
    """Input: ``stand_ins``.  Output: table ``output(rid, of_rid)``."""
    return f"CREATE OR REPLACE TABLE {q(output)} AS SELECT rid, of_rid FROM {q(stand_ins)}"


def map_back_sql(scored: str, stand_in_of: str = STAND_IN_OF) -> str:
    """Input: ``scored(rid_l, rid_r, ...)`` and ``stand_in_of``.  Output: ``scored`` replaced with
    every stand-in rid mapped back to its record (the real rid of each pair stays the smaller one)."""
    return (
        f"CREATE OR REPLACE TABLE {q(scored)} AS"
        f" SELECT least(coalesce(a.of_rid, t.rid_l), coalesce(b.of_rid, t.rid_r)) AS rid_l,"
        f" greatest(coalesce(a.of_rid, t.rid_l), coalesce(b.of_rid, t.rid_r)) AS rid_r,"
        f" t.* EXCLUDE (rid_l, rid_r)"
        f" FROM {q(scored)} t LEFT JOIN {q(stand_in_of)} a ON a.rid = t.rid_l"
        f" LEFT JOIN {q(stand_in_of)} b ON b.rid = t.rid_r"
    )


def resolve_salt_banks(con, layout: RecordLayout, blocked: str, columns: Sequence[str],
                       records: str = "hub.records", catalog: str = "hub.", prefix: str = "aidlink") -> tuple[str, int]:
    """Run steps 1-3 on connection ``con`` (the hub database attached as ``hub``): best slots,
    stand-ins (table :data:`STAND_INS`, rids above every record's) and the rewritten pair table.
    Returns (name of the rewritten pair table, number of stand-ins).  Another ``prefix`` names
    another set of tables (``<prefix>_best_slots``, ``<prefix>_stand_ins``, ...)."""
    best, stand_ins = (BEST_SLOTS, STAND_INS) if prefix == "aidlink" else (f"{prefix}_best_slots", f"{prefix}_stand_ins")
    top = con.execute(f"SELECT coalesce(max(rid), 0) FROM {records}").fetchall()[0][0]
    con.execute(best_slots_sql(layout, blocked, records, output=best, catalog=catalog))
    con.execute(stand_ins_sql(layout, columns, records, best=best, output=stand_ins, catalog=catalog), [top])
    out = f"{prefix}_blocked_resolved"
    con.execute(rewrite_pairs_sql(layout, blocked, best=best, stand_ins=stand_ins, output=out))
    return out, int(con.execute(f"SELECT count(*) FROM {q(stand_ins)}").fetchall()[0][0])


# ---------------------------------------------------------------- u of the bank levels

BANK_U_PREFIX = "aidlink_bank_u"


def bank_u_pairs_sql(layout: RecordLayout, records: str = "hub.records", catalog: str = "hub.",
                     output: str = f"{BANK_U_PREFIX}_pairs") -> str:
    """Input: ``records``, ``bank_<field>``; bound: seed (an integer), the number of bank records
    to draw, the number of other records to draw, the share of their cross product to keep.
    Output: table ``output(match_key, join_key_l, join_key_r)``: random (bank record, other record)
    pairs -- the pairs whose level counts give the bank levels' u, as random pairs give the
    other levels' u.  Draws are by a seeded hash, so a run is reproducible."""
    banks = " UNION ".join(f"SELECT rid FROM {catalog}{q(bank_table(f))}" for f in layout.banks)
    return (
        f"CREATE OR REPLACE TABLE {q(output)} AS"
        f" WITH b AS (SELECT rid FROM ({banks}) ORDER BY hash(rid, $1) LIMIT $2),"
        f" o AS (SELECT rid FROM {records} WHERE rid NOT IN (SELECT rid FROM b) ORDER BY hash(rid, $1 + 1) LIMIT $3)"
        f" SELECT '0' AS match_key, least(b.rid, o.rid) AS join_key_l, greatest(b.rid, o.rid) AS join_key_r"
        f" FROM b CROSS JOIN o WHERE hash(b.rid, o.rid, $1 + 2) % 1000000 < $4 * 1000000"
    )
