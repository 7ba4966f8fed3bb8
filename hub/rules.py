"""The supervision rules (the "legal supervision model"): rule sets, their
compiler to parameterised SQL, and the executor that turns clusters into clues.

A rule set (``schemas/rules.schema.json``, reference ``docs/formats/rules.md``)
says which combination of datasets and minimised attributes in one cluster
makes a clue, of what type, for which receiver and on what legal basis.

* :func:`load_rules` validates a rule set on load (JSON Schema, every problem
  with its JSON path) and on meaning against the linkage schema (dataset kinds
  exist, every attribute is one the dataset kind may send -- minimisation --,
  operators and values fit the attribute, rule references exist and form no
  cycle, receivers are declared and can re-identify the person).  Every problem
  is raised together in one :class:`~linkage.errors.RuleError`.
* :func:`compile_rules` turns a :class:`RuleSet` into a list of
  :class:`SqlStep` -- ``(name, sql, params)``.  Every literal of the rule set is
  a bound ``$pN`` parameter; identifiers come only from the validated linkage
  schema and are quoted; no rule text is ever pasted into SQL.
* :func:`apply_rules` runs the steps in order on a DuckDB connection and
  returns clue counts.

Tables (DuckDB):

input  ``records(dataset, dataset_kind, agency, token, attr_<name> ...)``
       one row per ingested record; ``attr_*`` typed per the schema's
       ``datasets`` section (NULL where a dataset does not send it).  Without
       an ``agency`` column, ``records.package_id`` ⋈ ``packages(package_id,
       agency)`` gives it (the hub store's layout).
input  ``clusters(run_id, cluster_id, dataset, token)``
       every record in exactly one cluster per run.
output ``clues(run_id, rule_id, clue_type, receiver, cluster_id, dataset,
       token, other_datasets VARCHAR[], deliver_to)``
       one row per (clue, token listed).  ``receiver`` is the agency the clue
       is for; ``deliver_to`` is the agency whose token the row carries and
       whose result package must carry the row (the receiver itself, unless
       the receiver holds no record of the person, e.g. a referral to the
       women's federation travels as the procuratorate's token).
       ``other_datasets``: the other dataset kinds in the cluster, sorted.

Work tables (``TEMP``, dropped after a normal run, kept in debug mode):
``rules_members`` (this run's records with their cluster), ``rules_matches``
(rule_id, cluster_id), ``rules_excluded`` (rule_id, exclusion_id,
cluster_id), ``rules_holders`` (rule_id, clue_type, receiver, priority,
holder).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema

from linkage.documents import canonical_json, describe_error, json_path, read_json, schema_document
from linkage.errors import AidlinkError, Problem, RuleError, StateError
from linkage.schema import AttributeSpec, DatasetKind, LinkageSchema, load_schema

log = logging.getLogger("aidlink.hub.rules")

BUILTIN_RULE_SETS = ("judicial-assistance",)

CLUE_TYPES = ("judicial_assistance", "referral", "supervision_suggestion", "exclusion")
OPERATORS = ("eq", "ne", "in", "lt", "le", "gt", "ge", "is_null")
_CLUSTER_FORMS = ("all", "any", "not", "has_dataset", "rule", "record", "dataset")
_WHERE_FORMS = ("all", "any", "not", "attr")

# Which operators fit which attribute type (see docs/formats/rules.md).
_OPS_BY_TYPE = {
    "boolean": ("eq", "ne", "is_null"),
    "integer": OPERATORS,
    "date": OPERATORS,
    "string": ("eq", "ne", "in", "is_null"),
}
_SQL_TYPE = {"boolean": "BOOLEAN", "integer": "BIGINT", "string": "VARCHAR", "date": "DATE"}
_SQL_OP = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

RECORDS = "records"
CLUSTERS = "clusters"
CLUES = "clues"
PACKAGES = "packages"
_RECORD_BASE_COLUMNS = ("dataset", "dataset_kind", "token")
_CLUSTER_COLUMNS = ("run_id", "cluster_id", "dataset", "token")
_WORK_TABLES = ("rules_members", "rules_matches", "rules_excluded", "rules_holders")


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class AllOf:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    item: Any


@dataclass(frozen=True)
class HasDataset:
    """The cluster contains a record of ``kind``."""

    kind: str


@dataclass(frozen=True)
class RuleRef:
    """The cluster has a clue of rule ``rule`` (after that rule's exclusions)."""

    rule: str


@dataclass(frozen=True)
class Compare:
    """One attribute of one record against a literal (already typed: bool/int/str/date)."""

    attr: str
    op: str
    value: Any  # a tuple for ``in``; a bool for ``is_null``


@dataclass(frozen=True)
class Record:
    """Some ONE record of ``kind`` in the cluster satisfies ``where``."""

    kind: str
    where: Any  # AllOf / AnyOf / Not / Compare over the record's attributes


Condition = AllOf | AnyOf | Not | HasDataset | RuleRef | Record


# --------------------------------------------------------------------------- rule set


@dataclass(frozen=True)
class Receiver:
    role: str
    agency: str
    name: str = ""
    name_en: str = ""
    datasets: tuple[str, ...] | None = None  # dataset kinds this agency sends, when declared


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    legal_basis: str
    clue_type: str
    condition: Condition
    title_en: str = ""
    description: str = ""
    receiver: str | None = None  # role; None for exclusions
    tokens_from: tuple[str, ...] = ()  # roles, in order of preference
    excludes: tuple[str, ...] = ()

    @property
    def is_exclusion(self) -> bool:
        return self.clue_type == "exclusion"


@dataclass(frozen=True)
class RuleSet:
    id: str
    version: int
    schema: LinkageSchema
    receivers: dict[str, Receiver]
    rules: tuple[Rule, ...]
    order: tuple[str, ...]  # rule ids in an order that respects references and exclusions
    document: dict[str, Any] = field(repr=False, compare=False)
    source: str = ""
    description: str = ""

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    @property
    def clue_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if not r.is_exclusion)

    @property
    def digest(self) -> str:
        """sha256 (hex) of the canonical rule-set document, for the report and audit log."""
        return hashlib.sha256(b"aidlink-rules-v1\x00" + canonical_json(self.document)).hexdigest()

    def describe(self) -> list[dict[str, Any]]:
        """What a report shows of each rule (no conditions' literals needed to read it)."""
        return [
            {"id": r.id, "title": r.title, "title_en": r.title_en, "legal_basis": r.legal_basis,
             "clue_type": r.clue_type, "receiver": r.receiver, "excludes": list(r.excludes)}
            for r in self.rules
        ]


class SqlStep(NamedTuple):
    """One statement: ``params`` maps ``$name`` placeholders to values (``RUN_ID`` is bound at run time)."""

    name: str
    sql: str
    params: dict[str, Any]


class _RunId:
    def __repr__(self) -> str:
        return "RUN_ID"


RUN_ID: Any = _RunId()
"""Placeholder value in :attr:`SqlStep.params`, replaced by the run id in :func:`apply_rules`."""


def bind_params(step: SqlStep, run_id: str) -> dict[str, Any]:
    """The step's parameters with :data:`RUN_ID` replaced by ``run_id``."""
    return {k: (run_id if v is RUN_ID else v) for k, v in step.params.items()}


# --------------------------------------------------------------------------- loading


def _rule_error(source: str, problems: list[Problem]) -> RuleError:
    return RuleError(source, problems)


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = schema_document("rules")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _resolve(sub: Any) -> dict[str, Any]:
    """A local ``{"$ref": "#/$defs/x"}`` of the rules schema, resolved (one level)."""
    if isinstance(sub, dict) and isinstance(sub.get("$ref"), str) and sub["$ref"].startswith("#/$defs/"):
        return schema_document("rules")["$defs"][sub["$ref"][len("#/$defs/"):]]
    return sub if isinstance(sub, dict) else {}


def _error_problems(error: jsonschema.ValidationError) -> list[Problem]:
    """Problems of one JSON Schema error, choosing the intended form of a ``oneOf``.

    The condition forms (``all``, ``any``, ``not``, ``has_dataset``, ``rule``,
    ``record``, ``dataset``) and the comparison operators are unions told apart
    by which key is present; the errors of the alternative the author meant are
    reported with their own paths instead of one vague "matches no form".
    """
    path = json_path(error)
    if error.validator == "oneOf":
        alternatives = [_resolve(a).get("required", []) for a in error.validator_value]
        if isinstance(error.instance, dict) and all(alternatives):
            meant = [i for i, keys in enumerate(alternatives) if all(k in error.instance for k in keys)]
            if len(meant) == 1:
                sub = [e for e in (error.context or []) if e.relative_schema_path and e.relative_schema_path[0] == meant[0]]
                if sub:
                    return [p for e in sub for p in _error_problems(e)]
            forms = " | ".join("+".join(keys) for keys in alternatives)
            return [Problem(path, f"needs exactly one of: {forms}")]
    if error.validator == "not" and error.validator_value == {}:
        return [Problem(path, "is not allowed here")]
    return [Problem(path, describe_error(error))]


def _schema_problems(doc: Any) -> list[Problem]:
    problems: list[Problem] = []
    for error in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        for p in _error_problems(error):
            if p not in problems:
                problems.append(p)
    return problems


class _Checker:
    """Meaning checks, written defensively: they run even on a document the JSON
    Schema refused, skipping what is malformed (already reported), so that every
    problem comes out in one go.  Builds the RuleSet when nothing is wrong."""

    def __init__(self, doc: Any, schema: LinkageSchema) -> None:
        self.doc = doc if isinstance(doc, dict) else {}
        self.schema = schema
        self.problems: list[Problem] = []
        self.refs: list[tuple[str, str, str]] = []  # (rule id, referenced id, path)

    def problem(self, path: str, message: str) -> None:
        p = Problem(path, message)
        if p not in self.problems:
            self.problems.append(p)

    # ---- document level

    def check(self) -> tuple[dict[str, Receiver], list[Rule], tuple[str, ...]]:
        doc = self.doc
        if isinstance(doc.get("linkage_schema"), str) and doc["linkage_schema"] != self.schema.id:
            self.problem("$.linkage_schema", f"the rules are written for linkage schema {doc['linkage_schema']!r}, "
                                             f"not for {self.schema.id!r}")
        receivers = self.receivers(doc.get("receivers"))
        rules: list[Rule] = []
        raw_rules = doc.get("rules") if isinstance(doc.get("rules"), list) else []
        seen: dict[str, int] = {}
        for i, raw in enumerate(raw_rules):
            rid = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(rid, str):
                if rid in seen:
                    self.problem(f"$.rules[{i}].id", f"duplicate rule id (also $.rules[{seen[rid]}])")
                else:
                    seen[rid] = i
            rule = self.rule(raw, f"$.rules[{i}]", receivers)
            if rule is not None:
                rules.append(rule)
        by_id = {r.id: r for r in rules}
        kinds = {rid: (raw_rules[i].get("clue_type") if isinstance(raw_rules[i], dict) else None)
                 for rid, i in seen.items()}
        self.cross_rule(raw_rules, seen, kinds)
        order = self.ordering(raw_rules, seen, kinds)
        if order is not None:
            self.deliverability(rules, by_id, receivers)
        return receivers, rules, order or ()

    def receivers(self, raw: Any) -> dict[str, Receiver]:
        out: dict[str, Receiver] = {}
        if not isinstance(raw, dict):
            return out
        for role, spec in raw.items():
            if not isinstance(spec, dict) or not isinstance(spec.get("agency"), str):
                continue
            datasets = spec.get("datasets")
            if isinstance(datasets, list):
                for j, kind in enumerate(datasets):
                    if isinstance(kind, str) and kind not in self.schema.datasets:
                        self.problem(f"$.receivers.{role}.datasets[{j}]", self.no_kind_message())
                datasets = tuple(k for k in datasets if isinstance(k, str))
            else:
                datasets = None
            out[role] = Receiver(role, spec["agency"], str(spec.get("name", "")), str(spec.get("name_en", "")),
                                 datasets)
        return out

    def no_kind_message(self) -> str:
        return f"names no dataset kind of linkage schema {self.schema.id!r} ({', '.join(sorted(self.schema.datasets))})"

    def rule(self, raw: Any, here: str, receivers: dict[str, Receiver]) -> Rule | None:
        if not isinstance(raw, dict):
            return None
        rid = raw.get("id") if isinstance(raw.get("id"), str) else "?"
        clue_type = raw.get("clue_type")
        receiver = raw.get("receiver")
        if isinstance(receiver, str) and receivers is not None and receiver not in receivers:
            self.problem(f"{here}.receiver", "names no receiver declared under $.receivers")
        tokens_from = raw.get("tokens_from")
        if isinstance(tokens_from, list):
            for j, role in enumerate(tokens_from):
                if isinstance(role, str) and role not in receivers:
                    self.problem(f"{here}.tokens_from[{j}]", "names no receiver declared under $.receivers")
        condition = self.condition(raw.get("condition"), f"{here}.condition", rid)
        if condition is None or not isinstance(raw.get("id"), str) or clue_type not in CLUE_TYPES:
            return None
        if not isinstance(raw.get("title"), str) or not isinstance(raw.get("legal_basis"), str):
            return None
        excludes = tuple(x for x in raw.get("excludes") or () if isinstance(x, str))
        is_exclusion = clue_type == "exclusion"
        if is_exclusion:
            tokens = ()
            receiver = None
        else:
            if not isinstance(receiver, str):
                return None
            tokens = tuple(t for t in tokens_from if isinstance(t, str)) if isinstance(tokens_from, list) else (receiver,)
        return Rule(id=raw["id"], title=raw["title"], legal_basis=raw["legal_basis"], clue_type=clue_type,
                    condition=condition, title_en=str(raw.get("title_en", "")),
                    description=str(raw.get("description", "")), receiver=receiver, tokens_from=tokens,
                    excludes=excludes)

    # ---- conditions

    def condition(self, node: Any, here: str, rule_id: str) -> Condition | None:
        if not isinstance(node, dict):
            return None
        forms = [f for f in _CLUSTER_FORMS if f in node]
        if len(forms) != 1:
            return None  # the JSON Schema says which forms are allowed
        form = forms[0]
        if form in ("all", "any"):
            items = node[form]
            if not isinstance(items, list) or not items:
                return None
            parts = [self.condition(c, f"{here}.{form}[{j}]", rule_id) for j, c in enumerate(items)]
            if any(p is None for p in parts):
                return None
            return (AllOf if form == "all" else AnyOf)(tuple(parts))
        if form == "not":
            inner = self.condition(node["not"], f"{here}.not", rule_id)
            return Not(inner) if inner is not None else None
        if form == "rule":
            if isinstance(node["rule"], str):
                self.refs.append((rule_id, node["rule"], f"{here}.rule"))
                return RuleRef(node["rule"])
            return None
        if form == "has_dataset":
            kind = self.kind(node["has_dataset"], f"{here}.has_dataset")
            return HasDataset(kind.name) if kind else None
        if form == "record":
            kind = self.kind(node["record"], f"{here}.record")
            where = self.where(node.get("where"), f"{here}.where", kind)
            return Record(kind.name, where) if kind and where is not None else None
        # form == "dataset": shorthand for one comparison on one record
        kind = self.kind(node["dataset"], f"{here}.dataset")
        cmp = self.compare(node, here, kind)
        return Record(kind.name, cmp) if kind and cmp is not None else None

    def kind(self, name: Any, here: str) -> DatasetKind | None:
        if not isinstance(name, str):
            return None
        kind = self.schema.datasets.get(name)
        if kind is None:
            self.problem(here, self.no_kind_message())
        return kind

    def where(self, node: Any, here: str, kind: DatasetKind | None) -> Any:
        if not isinstance(node, dict):
            return None
        forms = [f for f in _WHERE_FORMS if f in node]
        if len(forms) != 1:
            return None
        form = forms[0]
        if form in ("all", "any"):
            items = node[form]
            if not isinstance(items, list) or not items:
                return None
            parts = [self.where(c, f"{here}.{form}[{j}]", kind) for j, c in enumerate(items)]
            if any(p is None for p in parts):
                return None
            return (AllOf if form == "all" else AnyOf)(tuple(parts))
        if form == "not":
            inner = self.where(node["not"], f"{here}.not", kind)
            return Not(inner) if inner is not None else None
        return self.compare(node, here, kind)

    def compare(self, node: dict[str, Any], here: str, kind: DatasetKind | None) -> Compare | None:
        attr = node.get("attr")
        ops = [o for o in OPERATORS if o in node]
        if not isinstance(attr, str):
            return None
        spec = None
        if kind is not None:
            spec = kind.attributes.get(attr)
            if spec is None:
                allowed = ", ".join(sorted(kind.attributes)) or "none"
                self.problem(f"{here}.attr", f"attribute {attr!r} may not be used for dataset kind {kind.name!r}: "
                                             f"it is not among the minimised attributes that kind sends ({allowed})")
        if len(ops) != 1:
            return None
        op = ops[0]
        if spec is None:
            return None
        value = self.value(op, node[op], f"{here}.{op}", spec)
        return Compare(attr, op, value) if value is not None else None

    def value(self, op: str, raw: Any, here: str, spec: AttributeSpec) -> Any:
        allowed = _OPS_BY_TYPE[spec.type]
        if op not in allowed:
            self.problem(here, f"operator {op!r} does not fit {spec.type} attribute {spec.name!r} "
                               f"(allowed: {', '.join(allowed)})")
            return None
        if op == "is_null":
            return raw if isinstance(raw, bool) else None
        if op == "in":
            if not isinstance(raw, list) or not raw:
                return None
            values = [self.scalar(v, f"{here}[{j}]", spec, op) for j, v in enumerate(raw)]
            return tuple(values) if all(v is not None for v in values) else None
        return self.scalar(raw, here, spec, op)

    def scalar(self, raw: Any, here: str, spec: AttributeSpec, op: str) -> Any:
        """The typed value of one literal, or None (with a problem) when it does not fit."""
        value: Any = None
        if spec.type == "boolean":
            value = raw if isinstance(raw, bool) else None
        elif spec.type == "integer":
            value = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
        elif spec.type == "string":
            value = raw if isinstance(raw, str) else None
        elif spec.type == "date" and isinstance(raw, str) and _ISO_DATE.match(raw):
            try:
                value = dt.date.fromisoformat(raw)
            except ValueError:
                value = None
        if value is None:
            what = {"date": "an ISO date (YYYY-MM-DD)", "integer": "an integer", "boolean": "true or false",
                    "string": "a string"}[spec.type]
            self.problem(here, f"must be {what} to compare with attribute {spec.name!r}")
            return None
        if spec.enum is not None and op in ("eq", "ne", "in") and value not in spec.enum:
            self.problem(here, f"is not one of the values of attribute {spec.name!r} "
                               f"({', '.join(map(str, spec.enum))}): it can never match")
            return None
        if spec.type == "integer" and op in ("eq", "ne", "in") and (
                (spec.minimum is not None and value < spec.minimum)
                or (spec.maximum is not None and value > spec.maximum)):
            self.problem(here, f"is outside the range of attribute {spec.name!r} "
                               f"({spec.minimum}..{spec.maximum}): it can never match")
            return None
        return value

    # ---- across rules

    def cross_rule(self, raw_rules: list[Any], seen: dict[str, int], kinds: dict[str, Any]) -> None:
        for _, ref, here in self.refs:
            if ref not in seen:
                self.problem(here, "names no rule of this rule set")
            elif kinds.get(ref) == "exclusion":
                self.problem(here, "names an exclusion rule; only clue rules can be referenced")
        for i, raw in enumerate(raw_rules):
            if not isinstance(raw, dict) or not isinstance(raw.get("excludes"), list):
                continue
            for j, ref in enumerate(raw["excludes"]):
                if not isinstance(ref, str):
                    continue
                if ref not in seen:
                    self.problem(f"$.rules[{i}].excludes[{j}]", "names no rule of this rule set")
                elif kinds.get(ref) == "exclusion":
                    self.problem(f"$.rules[{i}].excludes[{j}]", "names an exclusion rule; exclusions remove clues only")

    def ordering(self, raw_rules: list[Any], seen: dict[str, int], kinds: dict[str, Any]) -> tuple[str, ...] | None:
        """Rule ids in dependency order, or None (with a problem per cycle).

        A rule depends on the rules it references (their clues after exclusion)
        and on the exclusion rules that exclude it (which must run first)."""
        deps: dict[str, list[str]] = {rid: [] for rid in seen}
        for rule_id, ref, _ in self.refs:
            if rule_id in deps and ref in deps and kinds.get(ref) != "exclusion":
                deps[rule_id].append(ref)
        for raw in raw_rules:
            if isinstance(raw, dict) and isinstance(raw.get("id"), str) and isinstance(raw.get("excludes"), list):
                for ref in raw["excludes"]:
                    if ref in deps and kinds.get(ref) != "exclusion":
                        deps[ref].append(raw["id"])
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done
        stack: list[str] = []
        cycles: list[list[str]] = []

        def visit(rid: str) -> None:
            state[rid] = 1
            stack.append(rid)
            for d in deps[rid]:
                if state.get(d) == 1:
                    cycles.append([*stack[stack.index(d):], d])
                elif d not in state:
                    visit(d)
            stack.pop()
            state[rid] = 2
            order.append(rid)

        for rid in sorted(seen, key=seen.__getitem__):
            if rid not in state:
                visit(rid)
        reported: set[frozenset[str]] = set()
        for cycle in cycles:
            key = frozenset(cycle)
            if key in reported:
                continue
            reported.add(key)
            first = min(cycle, key=seen.__getitem__)
            self.problem(f"$.rules[{seen[first]}]", "rules depend on each other in a cycle "
                                                    "(references and exclusions): " + " -> ".join(cycle))
        return None if cycles else tuple(order)

    def deliverability(self, rules: list[Rule], by_id: dict[str, Rule], receivers: dict[str, Receiver]) -> None:
        """A clue lists the tokens of its holders (``tokens_from``) only.  When every
        holder declares its dataset kinds, the condition must guarantee a record
        of one of those kinds, or no holder could ever re-identify the person."""
        def deliverable(c: Any, held: frozenset[str]) -> bool | None:
            """Whether every cluster the condition holds on has a record of a ``held`` kind
            (None: depends on a rule that did not parse -- not judged).  A conjunction
            needs one such part; a disjunction needs it of every branch."""
            if isinstance(c, HasDataset | Record):
                return c.kind in held
            if isinstance(c, AllOf | AnyOf):
                parts = [deliverable(x, held) for x in c.items]
                if any(p is None for p in parts):
                    return None
                return any(parts) if isinstance(c, AllOf) else all(parts)
            if isinstance(c, RuleRef):
                return deliverable(by_id[c.rule].condition, held) if c.rule in by_id else None
            return False  # Not

        for rule in rules:
            if rule.is_exclusion or any(r not in receivers for r in rule.tokens_from):
                continue
            holders = [receivers[r] for r in rule.tokens_from]
            if any(h.datasets is None for h in holders):
                continue
            held = frozenset(k for h in holders for k in h.datasets or ())
            if deliverable(rule.condition, held) is False:
                i = next(j for j, raw in enumerate(self.doc["rules"])
                         if isinstance(raw, dict) and raw.get("id") == rule.id)
                where = "tokens_from" if "tokens_from" in self.doc["rules"][i] else "receiver"
                names = ", ".join(h.role for h in holders)
                self.problem(f"$.rules[{i}].{where}",
                             f"the condition guarantees no record that {names} hold(s), so the clue could not be "
                             "delivered to anyone able to re-identify the person; list a holder in tokens_from")


def ruleset_from_document(doc: Any, schema: LinkageSchema, source: str = "<rules>") -> RuleSet:
    """Validate a parsed rule-set document against the rules JSON Schema and,
    on meaning, against ``schema``; raise one RuleError listing every problem."""
    problems = _schema_problems(doc)
    checker = _Checker(doc, schema)
    receivers, rules, order = checker.check()
    problems += [p for p in checker.problems if p not in problems]
    if problems:
        raise _rule_error(source, problems)
    doc = copy.deepcopy(doc)
    return RuleSet(id=doc["id"], version=doc["version"], schema=schema, receivers=receivers,
                   rules=tuple(rules), order=order, document=doc, source=source,
                   description=doc.get("description", ""))


def load_rules(path_or_name: str | Path, schema: LinkageSchema | str | Path = "judicial-assistance") -> RuleSet:
    """Load a rule-set file, or a built-in one by name (``judicial-assistance``),
    validated against the linkage schema ``schema`` (an object, a path or a
    built-in schema name)."""
    if not isinstance(schema, LinkageSchema):
        schema = load_schema(schema)
    if str(path_or_name) in BUILTIN_RULE_SETS:
        name = str(path_or_name)
        text = resources.files("schemas").joinpath(f"{name}.rules.json").read_text("utf-8")
        return ruleset_from_document(json.loads(text), schema, f"builtin:{name}")
    return ruleset_from_document(read_json(path_or_name), schema, str(path_or_name))


# --------------------------------------------------------------------------- compiling


def _quote(identifier: str) -> str:
    """A quoted SQL identifier (names come from the validated schema; quoting is belt and braces)."""
    return '"' + identifier.replace('"', '""') + '"'


def _attr_column(attr: str) -> str:
    return _quote(f"attr_{attr}")


class _Params:
    """Collects the literals of one statement as named parameters ``$p0, $p1, ...``."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"${name}"

    def with_run_id(self) -> dict[str, Any]:
        return {"run_id": RUN_ID, **self.values}


def _where_sql(node: Any, p: _Params, m: str = "m") -> str:
    """SQL over one row ``m`` of rules_members; two-valued: a comparison with NULL is false."""
    if isinstance(node, AllOf):
        return "(" + " AND ".join(_where_sql(x, p, m) for x in node.items) + ")"
    if isinstance(node, AnyOf):
        return "(" + " OR ".join(_where_sql(x, p, m) for x in node.items) + ")"
    if isinstance(node, Not):
        return f"(NOT {_where_sql(node.item, p, m)})"
    assert isinstance(node, Compare)
    col = f"{m}.{_attr_column(node.attr)}"
    if node.op == "is_null":
        return f"({col} IS NULL)" if node.value else f"({col} IS NOT NULL)"
    if node.op == "in":
        return f"coalesce({col} IN ({', '.join(p.bind(v) for v in node.value)}), false)"
    return f"coalesce({col} {_SQL_OP[node.op]} {p.bind(node.value)}, false)"


def _condition_sql(node: Condition, p: _Params, k: str = "k") -> str:
    """SQL over one cluster ``k`` (a row with ``cluster_id``)."""
    if isinstance(node, AllOf):
        return "(" + " AND ".join(_condition_sql(x, p, k) for x in node.items) + ")"
    if isinstance(node, AnyOf):
        return "(" + " OR ".join(_condition_sql(x, p, k) for x in node.items) + ")"
    if isinstance(node, Not):
        return f"(NOT {_condition_sql(node.item, p, k)})"
    if isinstance(node, HasDataset):
        return (f"EXISTS (SELECT * FROM rules_members AS m WHERE m.cluster_id = {k}.cluster_id "
                f"AND m.dataset_kind = {p.bind(node.kind)})")
    if isinstance(node, Record):
        return (f"EXISTS (SELECT * FROM rules_members AS m WHERE m.cluster_id = {k}.cluster_id "
                f"AND m.dataset_kind = {p.bind(node.kind)} AND {_where_sql(node.where, p)})")
    assert isinstance(node, RuleRef)
    return (f"EXISTS (SELECT * FROM rules_matches AS h WHERE h.cluster_id = {k}.cluster_id "
            f"AND h.rule_id = {p.bind(node.rule)})")


def negated_kinds(node: Any, negated: bool = False) -> frozenset[str]:
    """Dataset kinds whose ABSENCE can make the condition true.  A rule using
    them runs only when the run holds records of every such kind: "absent from
    the 低保 roster" means nothing when no 低保 roster was sent."""
    if isinstance(node, AllOf | AnyOf):
        return frozenset().union(*(negated_kinds(x, negated) for x in node.items))
    if isinstance(node, Not):
        return negated_kinds(node.item, not negated)
    if isinstance(node, HasDataset | Record) and negated:
        return frozenset({node.kind})
    return frozenset()


def _attributes_used(node: Any, kind: str | None = None) -> set[tuple[str, str]]:
    if isinstance(node, AllOf | AnyOf):
        return set().union(*(_attributes_used(x, kind) for x in node.items))
    if isinstance(node, Not):
        return _attributes_used(node.item, kind)
    if isinstance(node, Record):
        return _attributes_used(node.where, node.kind)
    if isinstance(node, Compare):
        return {(kind or "", node.attr)}
    return set()


def _attribute_types(ruleset: RuleSet) -> dict[str, str]:
    """attr name -> schema type, for every attribute the rule set uses."""
    types: dict[str, str] = {}
    for rule in ruleset.rules:
        for kind, attr in _attributes_used(rule.condition):
            types[attr] = ruleset.schema.datasets[kind].attributes[attr].type
    return dict(sorted(types.items()))


def resolve_agencies(ruleset: RuleSet, agencies: Mapping[str, str] | None = None) -> dict[str, str]:
    """Receiver role -> agency id: the rule set's defaults, overridden by the run config."""
    out = {role: r.agency for role, r in ruleset.receivers.items()}
    problems = []
    for role, agency in (agencies or {}).items():
        if role not in out:
            problems.append(Problem(f"$.{role}", "names no receiver role of the rule set"))
        elif not isinstance(agency, str) or not re.match(r"^[a-z0-9][a-z0-9_.-]{0,63}$", agency):
            problems.append(Problem(f"$.{role}", "is not a valid agency id"))
        else:
            out[role] = agency
    if problems:
        raise _rule_error("receiver mapping", problems)
    return out


def build_members_sql(ruleset: RuleSet, record_columns: Iterable[str] | None = None) -> SqlStep:
    """clusters (this run) ⋈ records -> TEMP rules_members(cluster_id, dataset,
    dataset_kind, agency, token, attr_<a> for every attribute the rules use).
    An attribute column absent from ``records`` (no agency sent it) is NULL.
    When ``records`` has no ``agency`` column, the agency comes from
    ``packages(package_id, agency)`` through ``records.package_id``."""
    have = set(record_columns) if record_columns is not None else None
    cols = []
    for attr, typ in _attribute_types(ruleset).items():
        col = _attr_column(attr)
        if have is None or f"attr_{attr}" in have:
            cols.append(f"r.{col} AS {col}")
        else:
            cols.append(f"CAST(NULL AS {_SQL_TYPE[typ]}) AS {col}")
    extra = "".join(f", {c}" for c in cols)
    if have is None or "agency" in have:
        agency, join = "r.agency", ""
    else:  # the hub store keeps the agency per package
        agency, join = "pk.agency", f" JOIN {PACKAGES} AS pk ON pk.package_id = r.package_id"
    sql = (f"CREATE OR REPLACE TEMP TABLE rules_members AS "
           f"SELECT c.cluster_id, c.dataset, r.dataset_kind, {agency} AS agency, c.token{extra} "
           f"FROM {CLUSTERS} AS c JOIN {RECORDS} AS r ON r.dataset = c.dataset AND r.token = c.token{join} "
           f"WHERE c.run_id = $run_id")
    return SqlStep("rules_members", sql, {"run_id": RUN_ID})


def build_work_tables_sql() -> list[SqlStep]:
    """Empty TEMP rules_matches, rules_excluded, rules_holders."""
    return [
        SqlStep("rules_matches", "CREATE OR REPLACE TEMP TABLE rules_matches (rule_id VARCHAR, cluster_id VARCHAR)", {}),
        SqlStep("rules_excluded", "CREATE OR REPLACE TEMP TABLE rules_excluded "
                                  "(rule_id VARCHAR, exclusion_id VARCHAR, cluster_id VARCHAR)", {}),
        SqlStep("rules_holders", "CREATE OR REPLACE TEMP TABLE rules_holders (rule_id VARCHAR, clue_type VARCHAR, "
                                 "receiver VARCHAR, priority INTEGER, holder VARCHAR)", {}),
    ]


def build_holders_sql(ruleset: RuleSet, agencies: Mapping[str, str]) -> SqlStep:
    """-> rules_holders: per clue rule, its receiver's agency and its token holders in order of preference."""
    p = _Params()
    rows = []
    for rule in ruleset.clue_rules:
        for priority, role in enumerate(rule.tokens_from):
            rows.append(f"({p.bind(rule.id)}, {p.bind(rule.clue_type)}, {p.bind(agencies[rule.receiver])}, "
                        f"{p.bind(priority)}, {p.bind(agencies[role])})")
    return SqlStep("rules_holders_fill", "INSERT INTO rules_holders VALUES " + ", ".join(rows), p.values)


def build_match_sql(rule: Rule) -> SqlStep:
    """rules_members -> rules_matches += (rule id, cluster) for every cluster the
    rule's condition holds on.  Reads rules_matches for referenced rules."""
    p = _Params()
    rule_id = p.bind(rule.id)
    cond = _condition_sql(rule.condition, p)
    guard = ""
    needed = sorted(negated_kinds(rule.condition))
    if needed:
        kinds = ", ".join(p.bind(k) for k in needed)
        guard = (f"(SELECT count(DISTINCT dataset_kind) FROM rules_members WHERE dataset_kind IN ({kinds})) "
                 f"= {p.bind(len(needed))} AND ")
    sql = (f"INSERT INTO rules_matches SELECT {rule_id}, k.cluster_id "
           f"FROM (SELECT DISTINCT cluster_id FROM rules_members) AS k WHERE {guard}{cond}")
    return SqlStep(f"match_{rule.id}", sql, p.values)


def build_exclusion_sql(rule: Rule, exclusions: list[str]) -> list[SqlStep]:
    """rules_matches: record in rules_excluded, then delete, the clusters of
    ``rule`` that any of ``exclusions`` matched."""
    p = _Params()
    rid = p.bind(rule.id)
    xs = ", ".join(p.bind(x) for x in exclusions)
    record = SqlStep(
        f"exclude_{rule.id}_record",
        f"INSERT INTO rules_excluded SELECT h.rule_id, x.rule_id, h.cluster_id FROM rules_matches AS h "
        f"JOIN rules_matches AS x ON x.cluster_id = h.cluster_id WHERE h.rule_id = {rid} AND x.rule_id IN ({xs})",
        p.values)
    q = _Params()
    rid = q.bind(rule.id)
    xs = ", ".join(q.bind(x) for x in exclusions)
    delete = SqlStep(
        f"exclude_{rule.id}",
        f"DELETE FROM rules_matches WHERE rule_id = {rid} AND cluster_id IN "
        f"(SELECT cluster_id FROM rules_matches WHERE rule_id IN ({xs}))",
        q.values)
    return [record, delete]


def build_clues_sql() -> list[SqlStep]:
    """rules_matches ⋈ rules_holders ⋈ rules_members -> clues (this run's rows
    replaced).  Per clue: the first holder (by priority) holding a record in the
    cluster; one row per token of that holder in the cluster."""
    create = SqlStep(
        "clues_table",
        f"CREATE TABLE IF NOT EXISTS {CLUES} (run_id VARCHAR, rule_id VARCHAR, clue_type VARCHAR, "
        f"receiver VARCHAR, cluster_id VARCHAR, dataset VARCHAR, token VARCHAR, other_datasets VARCHAR[], "
        f"deliver_to VARCHAR)",
        {})
    clear = SqlStep("clues_clear", f"DELETE FROM {CLUES} WHERE run_id = $run_id", {"run_id": RUN_ID})
    write = SqlStep(
        "clues_write",
        f"INSERT INTO {CLUES} (run_id, rule_id, clue_type, receiver, cluster_id, dataset, token, other_datasets, "
        f"deliver_to) "
        f"WITH best AS ("
        f"SELECT h.rule_id, h.cluster_id, min(o.priority) AS priority "
        f"FROM rules_matches AS h JOIN rules_holders AS o ON o.rule_id = h.rule_id "
        f"WHERE EXISTS (SELECT * FROM rules_members AS m WHERE m.cluster_id = h.cluster_id AND m.agency = o.holder) "
        f"GROUP BY h.rule_id, h.cluster_id) "
        f"SELECT $run_id, o.rule_id, o.clue_type, o.receiver, m.cluster_id, m.dataset, m.token, "
        f"coalesce((SELECT list(DISTINCT mo.dataset_kind ORDER BY mo.dataset_kind) FROM rules_members AS mo "
        f"WHERE mo.cluster_id = m.cluster_id AND mo.dataset_kind <> m.dataset_kind), []::VARCHAR[]), o.holder "
        f"FROM best AS b JOIN rules_holders AS o ON o.rule_id = b.rule_id AND o.priority = b.priority "
        f"JOIN rules_members AS m ON m.cluster_id = b.cluster_id AND m.agency = o.holder "
        f"ORDER BY o.rule_id, m.cluster_id, m.dataset, m.token",
        {"run_id": RUN_ID})
    return [create, clear, write]


def compile_rules(ruleset: RuleSet, *, agencies: Mapping[str, str] | None = None,
                  record_columns: Iterable[str] | None = None) -> list[SqlStep]:
    """The SQL steps that turn ``records`` + ``clusters`` into ``clues``, in order.

    ``agencies`` maps receiver roles to agency ids (run config; defaults from
    the rule set).  ``record_columns``: the columns ``records`` really has
    (attribute columns missing there become typed NULLs); None assumes all.
    """
    resolved = resolve_agencies(ruleset, agencies)
    excluders: dict[str, list[str]] = {}
    for rule in ruleset.rules:
        for target in rule.excludes:
            excluders.setdefault(target, []).append(rule.id)
    steps = [build_members_sql(ruleset, record_columns), *build_work_tables_sql(),
             build_holders_sql(ruleset, resolved)]
    for rule_id in ruleset.order:
        rule = ruleset.rule(rule_id)
        steps.append(build_match_sql(rule))
        if rule_id in excluders:
            steps += build_exclusion_sql(rule, excluders[rule_id])
    steps += build_clues_sql()
    return steps


# --------------------------------------------------------------------------- running


def _columns(con: Any, table: str) -> list[str] | None:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $t "
        "AND table_schema = current_schema() ORDER BY ordinal_position", {"t": table}).fetchall()
    return [r[0] for r in rows] or None


def _check_inputs(con: Any, run_id: str) -> list[str]:
    """The columns of ``records``; StateError when the match step has not run."""
    if not isinstance(run_id, str) or not run_id:
        raise StateError("the run id must be a non-empty string")
    record_cols = _columns(con, RECORDS)
    cluster_cols = _columns(con, CLUSTERS)
    if record_cols is None or cluster_cols is None:
        raise StateError("rules need the records and clusters tables: run the match step first")
    missing = [f"{RECORDS}.{c}" for c in _RECORD_BASE_COLUMNS if c not in record_cols]
    missing += [f"{CLUSTERS}.{c}" for c in _CLUSTER_COLUMNS if c not in cluster_cols]
    if "agency" not in record_cols:
        package_cols = _columns(con, PACKAGES) or []
        if "package_id" not in record_cols or not {"package_id", "agency"} <= set(package_cols):
            missing.append(f"{RECORDS}.agency (or {RECORDS}.package_id with {PACKAGES}.agency)")
    if missing:
        raise StateError(f"the match step's tables lack column(s) {', '.join(missing)}")
    n = con.execute(f"SELECT count(*) FROM {CLUSTERS} WHERE run_id = $run_id", {"run_id": run_id}).fetchone()[0]
    if not n:
        raise StateError(f"run {run_id!r} has no clusters: run the match step for it first")
    return record_cols


def _run_step(con: Any, step: SqlStep, run_id: str) -> int | None:
    try:
        result = con.execute(step.sql, bind_params(step, run_id)).fetchall()
    except Exception as e:  # never echo the database's message: it may quote a value
        raise AidlinkError(f"rules step {step.name!r} failed ({type(e).__name__}); its SQL (values are bound "
                           f"parameters, not shown):\n{step.sql}") from e
    if result and len(result[0]) == 1 and isinstance(result[0][0], int):
        return result[0][0]
    return None


def apply_rules(con: Any, ruleset: RuleSet, run_id: str, *, agencies: Mapping[str, str] | None = None,
                debug: bool = False) -> dict[str, Any]:
    """Run the rule set over ``clusters`` (run ``run_id``) and ``records``; write ``clues``.

    Normally every step runs inside one transaction (all or nothing) and the
    work tables are dropped.  With ``debug`` the steps run and commit one by
    one, each step's row count is logged, and the work tables are kept for
    inspection on this connection.  Returns counts only (never a value):

    ``clues``: {rule: {receiver agency: clusters with a clue}};
    ``tokens``: {rule: {deliver_to agency: token rows}};
    ``delivered``: {rule: {deliver_to agency: clusters whose clue that agency's package carries}};
    ``matched``: {rule: clusters matched before exclusions};
    ``excluded``: {rule: {exclusion: clusters removed}};
    ``undeliverable``: {rule: clusters whose token holders hold no record};
    ``skipped``: {rule: [dataset kinds absent from the run that the rule needs
    to tell absence]}.
    """
    record_cols = _check_inputs(con, run_id)
    resolved = resolve_agencies(ruleset, agencies)
    used = _attribute_types(ruleset)
    missing = [a for a in used if f"attr_{a}" not in record_cols]
    if missing:
        log.warning("no records carry attribute(s) %s: rules treat them as null", ", ".join(missing))
    steps = compile_rules(ruleset, agencies=resolved, record_columns=record_cols)
    if not debug:
        con.begin()
    try:
        for step in steps:
            start = time.perf_counter()
            count = _run_step(con, step, run_id)
            if debug:
                log.info("rules step %s: %s rows (%.3f s)", step.name, "-" if count is None else count,
                         time.perf_counter() - start)
        summary = _summarise(con, ruleset, run_id, resolved)
    except BaseException:
        if not debug:
            con.rollback()
        raise
    if not debug:
        for table in _WORK_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")
        con.commit()
    return summary


def _summarise(con: Any, ruleset: RuleSet, run_id: str, agencies: Mapping[str, str]) -> dict[str, Any]:
    clue_rules = ruleset.clue_rules
    clues: dict[str, dict[str, int]] = {r.id: {agencies[r.receiver]: 0} for r in clue_rules}
    for rule_id, receiver, n in con.execute(
            f"SELECT rule_id, receiver, count(DISTINCT cluster_id) FROM {CLUES} WHERE run_id = $run_id "
            f"GROUP BY ALL ORDER BY ALL", {"run_id": run_id}).fetchall():
        clues.setdefault(rule_id, {})[receiver] = n
    tokens: dict[str, dict[str, int]] = {r.id: {} for r in clue_rules}
    carried: dict[str, dict[str, int]] = {r.id: {} for r in clue_rules}
    for rule_id, holder, n, persons in con.execute(
            f"SELECT rule_id, deliver_to, count(*), count(DISTINCT cluster_id) FROM {CLUES} WHERE run_id = $run_id "
            f"GROUP BY ALL ORDER BY ALL", {"run_id": run_id}).fetchall():
        tokens.setdefault(rule_id, {})[holder] = n
        carried.setdefault(rule_id, {})[holder] = persons
    final = dict(con.execute("SELECT rule_id, count(*) FROM rules_matches GROUP BY ALL").fetchall())
    excluded: dict[str, dict[str, int]] = {}
    removed: dict[str, int] = {}
    for rule_id, exclusion_id, n in con.execute(
            "SELECT rule_id, exclusion_id, count(DISTINCT cluster_id) FROM rules_excluded "
            "GROUP BY ALL ORDER BY ALL").fetchall():
        excluded.setdefault(rule_id, {})[exclusion_id] = n
    for rule_id, n in con.execute(
            "SELECT rule_id, count(DISTINCT cluster_id) FROM rules_excluded GROUP BY ALL").fetchall():
        removed[rule_id] = n
    matched = {r.id: final.get(r.id, 0) + removed.get(r.id, 0) for r in ruleset.rules}
    delivered = dict(con.execute(
        f"SELECT rule_id, count(DISTINCT cluster_id) FROM {CLUES} WHERE run_id = $run_id GROUP BY ALL",
        {"run_id": run_id}).fetchall())
    undeliverable = {r.id: final.get(r.id, 0) - delivered.get(r.id, 0) for r in clue_rules}
    present = {k for (k,) in con.execute("SELECT DISTINCT dataset_kind FROM rules_members").fetchall()}
    skipped = {r.id: sorted(negated_kinds(r.condition) - present) for r in ruleset.rules
               if negated_kinds(r.condition) - present}
    for rule_id, n in undeliverable.items():
        if n:
            log.warning("rule %s: %d matched cluster(s) hold no record of its token holders", rule_id, n)
    for rule_id, kinds in skipped.items():
        log.warning("rule %s did not run: the run has no records of %s", rule_id, ", ".join(kinds))
    return {"run_id": run_id, "rule_set": ruleset.id, "rule_set_digest": ruleset.digest, "clues": clues,
            "tokens": tokens, "delivered": carried, "matched": matched, "excluded": excluded,
            "undeliverable": undeliverable, "skipped": skipped}
