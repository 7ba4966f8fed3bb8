"""The linkage schema: what every agency encodes, and how.

``load_schema(path)`` validates the document on load (JSON Schema, every
problem with its JSON path), then on meaning (cross-field references), and
returns a frozen :class:`LinkageSchema`.  ``schema.fingerprint`` is the
sha256 over the canonical schema plus the normaliser, encoding, pinyin-table
and traditional-table versions: two parties whose fingerprints differ must
not be linked.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .documents import canonical_json, read_json, validate_document
from .errors import ConfigError, Problem
from .versions import component_versions

BUILTIN_SCHEMAS = ("judicial-assistance", "febrl")


MAX_BANK_SLOTS = 256
VALIDITY_NORMALISERS = frozenset({"id_number"})  # normalisers with a check a validity flag reports
#: Normalisers whose values carry a check character, and their width: a field with ``typo_keys``
#: sends ``2 * width - 1`` typo keys, the hashes of a failing value's one-typo corrections
#: (linkage.encode, section 6).
TYPO_KEY_WIDTHS = {"id_number": 18}


@dataclass(frozen=True)
class Salt:
    field: str
    on_missing: str = "null"  # "null" | "unsalted" | "bank"
    bank: tuple[str, ...] = ()  # the salt values of a bank, in order (on_missing "bank")


@dataclass(frozen=True)
class Hardening:
    balance: bool = False
    xor_fold: int = 0
    salt: Salt | None = None
    blip_epsilon: float | None = None
    permute: bool = False

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> Hardening:
        doc = doc or {}
        salt = doc.get("salt")
        return cls(
            balance=bool(doc.get("balance", False)),
            xor_fold=int(doc.get("xor_fold", 0)),
            salt=Salt(salt["field"], salt.get("on_missing", "null"),
                      tuple(f"{y:04d}" for y in range(salt["bank"]["from"], salt["bank"]["to"] + 1))
                      if salt.get("on_missing") == "bank" and salt.get("bank") else ()) if salt else None,
            blip_epsilon=float(doc["blip"]["epsilon"]) if doc.get("blip") else None,
            permute=bool(doc.get("permute", False)),
        )

    def output_length(self, length: int) -> int:
        """Filter length after balancing (doubles) and XOR-folding (halves each)."""
        out = length * 2 if self.balance else length
        return out >> self.xor_fold


@dataclass(frozen=True)
class Tokeniser:
    kind: str  # char_ngrams | pinyin_ngrams | digit_ngrams | exact
    n: int = 2
    padded: bool = True


@dataclass(frozen=True)
class FilterSpec:
    length: int
    bits_per_token: int | None = None
    bits_per_feature: int | None = None
    hardening: Hardening = field(default_factory=Hardening)

    @property
    def output_length(self) -> int:
        return self.hardening.output_length(self.length)


@dataclass(frozen=True)
class ClkContribution:
    bits_per_token: int | None = None
    bits_per_feature: int | None = None


@dataclass(frozen=True)
class FieldSpec:
    name: str
    normaliser: str
    tokeniser: Tokeniser
    filter: FilterSpec | None = None
    clk: ClkContribution | None = None
    exact_hash: bool = False
    frequency_adjust: bool = False
    validity_flag: bool = False  # send ok_<field>: the value passed its check (ID numbers)
    typo_keys: bool = False  # send vk_<field>_<j>: exact hashes of a failing value's one-typo corrections
    derive_from: str | None = None
    derive_via: str | None = None
    description: str = ""
    #: Every (from, via) the field is filled from, tried in order; ``derive_from``/``derive_via``
    #: are the first.
    derive_chain: tuple[tuple[str, str], ...] = ()

    @property
    def typo_key_columns(self) -> tuple[str, ...]:
        """The ``vk_<field>_<j>`` columns of a field with ``typo_keys`` (none otherwise): one per
        position of the normaliser's fixed width (a substitution there), then one per adjacent pair
        (a transposition)."""
        if not self.typo_keys:
            return ()
        return tuple(f"vk_{self.name}_{j}" for j in range(2 * TYPO_KEY_WIDTHS[self.normaliser] - 1))


@dataclass(frozen=True)
class BlockingKey:
    name: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class AttributeSpec:
    name: str
    type: str
    enum: tuple[Any, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class DatasetKind:
    name: str
    attributes: dict[str, AttributeSpec]
    description: str = ""


@dataclass(frozen=True)
class LinkageSchema:
    id: str
    version: int
    fields: tuple[FieldSpec, ...]
    clk_length: int
    clk_hardening: Hardening
    blocking_keys: tuple[BlockingKey, ...]
    datasets: dict[str, DatasetKind]
    document: dict[str, Any] = field(repr=False, compare=False)
    fingerprint: str = ""
    description: str = ""

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def filter_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.filter is not None)

    @property
    def exact_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.exact_hash)

    @property
    def flag_fields(self) -> tuple[FieldSpec, ...]:
        """Fields that send a validity flag ``ok_<field>`` (``validity_flag``)."""
        return tuple(f for f in self.fields if f.validity_flag)

    @property
    def typo_fields(self) -> tuple[FieldSpec, ...]:
        """Fields that send typo keys ``vk_<field>_<j>`` (``typo_keys``)."""
        return tuple(f for f in self.fields if f.typo_keys)

    @property
    def bank_fields(self) -> tuple[FieldSpec, ...]:
        """Fields whose filter has a salt bank (``salt.on_missing: "bank"``)."""
        return tuple(f for f in self.filter_fields
                     if f.filter.hardening.salt is not None and f.filter.hardening.salt.on_missing == "bank")

    @property
    def clk_output_length(self) -> int:
        return self.clk_hardening.output_length(self.clk_length)

    def fingerprint_inputs(self) -> dict[str, Any]:
        """What the fingerprint is computed over (no secrets, no descriptions)."""
        return {"schema": _strip_descriptions(self.document), "components": component_versions()}


def _strip_descriptions(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _strip_descriptions(v) for k, v in doc.items() if k != "description"}
    if isinstance(doc, list):
        return [_strip_descriptions(v) for v in doc]
    return doc


def compute_fingerprint(doc: dict[str, Any]) -> str:
    """sha256 (hex) over the canonical schema and the component versions."""
    payload = {"schema": _strip_descriptions(doc), "components": component_versions()}
    return hashlib.sha256(b"aidlink-schema-fingerprint-v1\x00" + canonical_json(payload)).hexdigest()


_DERIVE_INPUT = {  # via -> normaliser the source field must have
    "pinyin": {"chinese_name"},
    "birth_date": {"id_number"},
    "sex": {"id_number"},
    "region_code": {"id_number"},
    "birth_year": {"id_number"},
    "salt_year": {"id_number"},
    "year": {"date"},
}


def derive_steps(d: dict[str, Any] | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A field's ``derive`` as a list of ``{from, via}`` steps (one object or an array of them)."""
    if not d:
        return []
    return list(d) if isinstance(d, list) else [d]


def _meaning_problems(doc: dict[str, Any]) -> list[Problem]:
    """Cross-field checks the JSON Schema cannot express."""
    problems: list[Problem] = []
    fields = doc["fields"]
    by_name: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, f in enumerate(fields):
        if f["name"] in by_name:
            problems.append(Problem(f"$.fields[{i}].name", "duplicate field name"))
        else:
            by_name[f["name"]] = (i, f)
    for i, f in enumerate(fields):
        here = f"$.fields[{i}]"
        steps = derive_steps(f.get("derive"))
        for j, d in enumerate(steps):
            at = f"{here}.derive" if isinstance(f.get("derive"), dict) else f"{here}.derive[{j}]"
            src = by_name.get(d["from"])
            if src is None:
                problems.append(Problem(f"{at}.from", "names no field of this schema"))
            elif src[0] >= i:
                problems.append(Problem(f"{at}.from", "must name a field listed before this one"))
            elif src[1]["normaliser"] not in _DERIVE_INPUT[d["via"]]:
                problems.append(Problem(f"{at}.via", f"cannot derive from a field normalised as {src[1]['normaliser']}"))
        tok = f["tokeniser"]
        if tok["kind"] == "pinyin_ngrams" and f["normaliser"] != "pinyin":
            problems.append(Problem(f"{here}.tokeniser.kind", "pinyin_ngrams needs the pinyin normaliser"))
        flt = f.get("filter")
        if flt:
            hard = flt.get("hardening") or {}
            problems += _hardening_problems(hard, flt["length"], f"{here}.filter.hardening", by_name, f["name"])
        if f.get("frequency_adjust") and not f.get("exact_hash"):
            problems.append(Problem(f"{here}.frequency_adjust", "needs exact_hash"))
        if f.get("validity_flag") and f["normaliser"] not in VALIDITY_NORMALISERS:
            problems.append(Problem(f"{here}.validity_flag", "only for fields normalised as "
                                    + ", ".join(sorted(VALIDITY_NORMALISERS))))
        if f.get("typo_keys"):
            if f["normaliser"] not in TYPO_KEY_WIDTHS:
                problems.append(Problem(f"{here}.typo_keys", "only for fields normalised as "
                                        + ", ".join(sorted(TYPO_KEY_WIDTHS))))
            if not f.get("exact_hash"):
                problems.append(Problem(f"{here}.typo_keys", "needs exact_hash"))
    if not any(f.get("clk") for f in fields):
        problems.append(Problem("$.fields", "no field contributes to the record CLK"))
    problems += _hardening_problems(doc["clk"].get("hardening") or {}, doc["clk"]["length"], "$.clk.hardening", by_name, None)
    seen = set()
    for j, bk in enumerate(doc.get("blocking_keys", [])):
        if bk["name"] in seen:
            problems.append(Problem(f"$.blocking_keys[{j}].name", "duplicate blocking key name"))
        seen.add(bk["name"])
        for k, fname in enumerate(bk["fields"]):
            if fname not in by_name:
                problems.append(Problem(f"$.blocking_keys[{j}].fields[{k}]", "names no field of this schema"))
    return problems


def _hardening_problems(hard: dict[str, Any], length: int, here: str,
                        by_name: dict[str, tuple[int, dict[str, Any]]], own: str | None) -> list[Problem]:
    problems = []
    salt = hard.get("salt")
    if salt:
        if salt["field"] not in by_name:
            problems.append(Problem(f"{here}.salt.field", "names no field of this schema"))
        elif salt["field"] == own:
            problems.append(Problem(f"{here}.salt.field", "a field cannot be salted with itself"))
        elif (by_name[salt["field"]][1].get("filter") or {}).get("hardening", {}).get("salt"):
            problems.append(Problem(f"{here}.salt.field", "the salt field must not itself be salted"))
        elif salt.get("on_missing") == "bank" and by_name[salt["field"]][1]["normaliser"] != "year":
            problems.append(Problem(f"{here}.salt.on_missing", "a bank needs a salt field normalised as year"))
        if salt.get("on_missing") == "bank":
            bank = salt.get("bank")
            if own is None:
                problems.append(Problem(f"{here}.salt.on_missing", "the CLK cannot have a salt bank"))
            elif not bank:
                problems.append(Problem(f"{here}.salt.bank", "on_missing bank needs bank: {from, to}"))
            elif not 1 <= bank["to"] - bank["from"] + 1 <= MAX_BANK_SLOTS:
                problems.append(Problem(f"{here}.salt.bank", f"must hold 1 to {MAX_BANK_SLOTS} years"))
        elif salt.get("bank"):
            problems.append(Problem(f"{here}.salt.bank", "only with on_missing bank"))
    out = length * (2 if hard.get("balance") else 1)
    folds = hard.get("xor_fold", 0)
    if out >> folds < 64 or (out >> folds) % 64:
        problems.append(Problem(f"{here}.xor_fold", "folded length must stay a multiple of 64 bits and at least 64"))
    return problems


def schema_from_document(doc: Any, source: str = "<schema>") -> LinkageSchema:
    """Validate a parsed schema document and build the frozen LinkageSchema."""
    validate_document(doc, "linkage-schema", source)
    problems = _meaning_problems(doc)
    if problems:
        raise ConfigError(source, problems)
    doc = copy.deepcopy(doc)
    fields = []
    for f in doc["fields"]:
        tok = f["tokeniser"]
        flt = f.get("filter")
        clk = f.get("clk")
        chain = tuple((d["from"], d["via"]) for d in derive_steps(f.get("derive")))
        d = {"from": chain[0][0], "via": chain[0][1]} if chain else {}
        fields.append(FieldSpec(
            name=f["name"],
            normaliser=f["normaliser"],
            tokeniser=Tokeniser(tok["kind"], int(tok.get("n", 2)), bool(tok.get("padded", True))),
            filter=FilterSpec(flt["length"], flt.get("bits_per_token"), flt.get("bits_per_feature"),
                              Hardening.from_doc(flt.get("hardening"))) if flt else None,
            clk=ClkContribution(clk.get("bits_per_token"), clk.get("bits_per_feature")) if clk else None,
            exact_hash=bool(f.get("exact_hash", False)),
            frequency_adjust=bool(f.get("frequency_adjust", False)),
            validity_flag=bool(f.get("validity_flag", False)),
            typo_keys=bool(f.get("typo_keys", False)),
            derive_from=d.get("from"),
            derive_via=d.get("via"),
            description=f.get("description", ""),
            derive_chain=chain,
        ))
    datasets = {
        name: DatasetKind(
            name=name,
            description=ds.get("description", ""),
            attributes={
                a: AttributeSpec(a, spec["type"], tuple(spec["enum"]) if "enum" in spec else None,
                                 spec.get("minimum"), spec.get("maximum"))
                for a, spec in ds["attributes"].items()
            },
        )
        for name, ds in doc.get("datasets", {}).items()
    }
    return LinkageSchema(
        id=doc["id"],
        version=doc["version"],
        fields=tuple(fields),
        clk_length=doc["clk"]["length"],
        clk_hardening=Hardening.from_doc(doc["clk"].get("hardening")),
        blocking_keys=tuple(BlockingKey(b["name"], tuple(b["fields"])) for b in doc.get("blocking_keys", [])),
        datasets=datasets,
        document=doc,
        fingerprint=compute_fingerprint(doc),
        description=doc.get("description", ""),
    )


def load_schema(path_or_name: str | Path) -> LinkageSchema:
    """Load a schema file, or a built-in schema by name (``judicial-assistance``, ``febrl``)."""
    if str(path_or_name) in BUILTIN_SCHEMAS:
        name = str(path_or_name)
        text = resources.files("schemas").joinpath(f"{name}.linkage.json").read_text("utf-8")
        import json

        return schema_from_document(json.loads(text), f"builtin:{name}")
    return schema_from_document(read_json(path_or_name), str(path_or_name))
