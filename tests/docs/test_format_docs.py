"""The format reference pages agree with the JSON Schemas in schemas/.

1. Every ``schemas/*.schema.json`` has a reference page (:data:`REFERENCE`),
   listed in docs/formats/index.md.
2. The page mentions every top-level property of the schema, and every
   property of the nested objects and ``$defs`` the page documents (the JSON
   pointers of :data:`REFERENCE`; ``ALL`` = every object in the schema).
   "Mentions" means the name occurs as a word; on pages marked strict it must
   occur in code (an inline code span or a code block), as a key should.
3. Every ```json block in docs/ that declares a document of a format --
   explicitly with ``schema=NAME`` in the info string (``schema=roster#public_identity``
   for a ``$defs`` document, ``schema=none`` to opt out), or recognisably by
   its keys -- validates with ``linkage.documents.validate_document``.  For
   the linkage schema, the run configuration and mappings the meaning checks
   of their loaders run too; a block marked ``invalid`` is an example of a
   refused document and must fail them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from linkage.documents import schema_document, validate_document
from linkage.errors import AidlinkError

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
ALL = "all"


@dataclass(frozen=True)
class Ref:
    page: str  # relative to docs/
    objects: tuple[str, ...] | str  # JSON pointers into the schema ("" = the top level), or ALL
    strict: bool = False


REFERENCE: dict[str, Ref] = {
    "linkage-schema": Ref("formats/linkage-schema.md", ALL, strict=True),
    "run-config": Ref("formats/run-config.md", ALL, strict=True),
    "audit-entry": Ref("formats/audit-log.md", ALL, strict=True),
    "report": Ref("formats/report.md", ALL, strict=True),
    "mapping": Ref("formats/mapping.md", ("", "/properties/source", "/$defs/attribute")),
    "manifest": Ref("formats/package.md", ("", "/properties/counts", "/properties/columns/items")),
    "roster": Ref("formats/package.md", ("", "/properties/signature", "/$defs/keys", "/$defs/hub",
                                         "/$defs/agency", "/$defs/public_identity")),
    "rules": Ref("formats/rules.md", ("", "/$defs/receiver", "/$defs/rule", "/$defs/all_of", "/$defs/any_of",
                                      "/$defs/none_of", "/$defs/has_dataset", "/$defs/rule_ref", "/$defs/record",
                                      "/$defs/dataset_compare", "/$defs/compare")),
}

# Properties a page of another owner does not mention yet: (schema, property) -> what to fix.
# The test fails when one of them becomes documented, so that the entry is removed.
KNOWN_UNDOCUMENTED = {
    ("roster", "description"): "docs/formats/package.md does not mention the roster's optional `description`",
}

# Example blocks of other owners' pages known not to validate: (page, text in the block) -> what to fix.
# Strict xfail: the test fails once the example is fixed, so that the entry is removed.
KNOWN_INVALID_EXAMPLES: dict = {}

SCHEMAS = sorted(p.name.removesuffix(".schema.json") for p in (ROOT / "schemas").glob("*.schema.json"))


# ---------------------------------------------------------------- schema walking


def resolve(schema: dict, pointer: str) -> dict:
    node = schema
    for part in [p for p in pointer.split("/") if p]:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def object_pointers(schema: dict) -> list[str]:
    """Every subschema with ``properties`` (not under if/not, which only constrain)."""
    found: list[str] = []

    def walk(node, ptr: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                found.append(ptr)
            for k, v in node.items():
                if k in ("if", "not", "const", "enum", "default", "examples"):
                    continue
                if k == "properties" and isinstance(v, dict):
                    for name, sub in v.items():
                        walk(sub, f"{ptr}/properties/{name}")
                else:
                    walk(v, f"{ptr}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{ptr}/{i}")

    walk(schema, "")
    return found


def documented_properties(name: str) -> dict[str, str]:
    """property -> the JSON pointer of the object it belongs to."""
    schema = schema_document(name)
    ref = REFERENCE[name]
    pointers = object_pointers(schema) if ref.objects == ALL else ref.objects
    props: dict[str, str] = {}
    for ptr in pointers:
        node = resolve(schema, ptr)
        assert isinstance(node.get("properties"), dict), f"{name}: {ptr or '(top level)'} has no properties"
        for p in node["properties"]:
            props.setdefault(p, ptr or "(top level)")
    return props


# ---------------------------------------------------------------- page reading


FENCE = re.compile(r"^(`{3,}|~{3,})\s*([^\s`]*)\s*(.*?)\s*$")


@dataclass
class CodeBlock:
    page: str
    line: int
    lang: str
    attrs: dict[str, str]
    body: str


def code_blocks(page: str, text: str) -> list[CodeBlock]:
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, fence = i + 1, m.group(1)
        attrs = {}
        for tok in m.group(3).split():
            k, eq, v = tok.partition("=")
            attrs[k] = v if eq else "true"
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence[:3]):
            body.append(lines[i])
            i += 1
        i += 1
        blocks.append(CodeBlock(page, start, m.group(2).lower(), attrs, "\n".join(body)))
    return blocks


def code_text(text: str) -> str:
    """The text of every inline code span and code block of a page."""
    parts = [b.body for b in code_blocks("", text)]
    prose = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", text, flags=re.M | re.S)
    parts += re.findall(r"`([^`\n]+)`", prose)
    return "\n".join(parts)


def mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", text) is not None


def all_pages() -> list[Path]:
    return sorted([*DOCS.glob("*.md"), *DOCS.glob("formats/*.md")])


# ---------------------------------------------------------------- 1, 2: pages mention every property


def test_every_schema_has_a_reference_page():
    assert sorted(REFERENCE) == SCHEMAS, "add the new schema to REFERENCE with its page"
    index = (DOCS / "formats" / "index.md").read_text("utf-8")
    for name, ref in REFERENCE.items():
        assert (DOCS / ref.page).exists(), f"docs/{ref.page} (reference for {name}) is missing"
        assert f"schemas/{name}.schema.json" in index, f"docs/formats/index.md does not name {name}.schema.json"
        assert f"({Path(ref.page).name}" in index, f"docs/formats/index.md does not link {ref.page}"


@pytest.mark.parametrize("name", SCHEMAS)
def test_reference_page_mentions_every_property(name):
    ref = REFERENCE[name]
    text = (DOCS / ref.page).read_text("utf-8")
    haystack = code_text(text) if ref.strict else text
    props = documented_properties(name)
    missing = {p: where for p, where in props.items() if not mentions(haystack, p)}
    known = {p for (s, p) in KNOWN_UNDOCUMENTED if s == name}
    unexpected = {p: w for p, w in missing.items() if p not in known}
    assert not unexpected, (f"docs/{ref.page} does not mention these properties of {name}.schema.json "
                            f"(property: where in the schema): {unexpected}")
    fixed = known - set(missing)
    assert not fixed, f"docs/{ref.page} now documents {fixed}: remove them from KNOWN_UNDOCUMENTED"


# ---------------------------------------------------------------- 3: JSON examples validate


def detect_format(doc) -> str | None:
    """The format a JSON example declares by its keys (None: a fragment, not a document)."""
    if not isinstance(doc, dict):
        return None
    if doc.get("format") == "aidlink-public-identity":
        return "roster#public_identity"
    if doc.get("format") == "aidlink-key-file":
        return "none"  # no JSON Schema: a fixed layout described in package.md
    if "linkage_schema" in doc and "rules" in doc:
        return "rules"
    if "row_key" in doc or ("dataset_kind" in doc and "fields" in doc):
        return "mapping"
    if "package_id" in doc and "direction" in doc:
        return "manifest"
    if "federation" in doc and "agencies" in doc:
        return "roster"
    if "fields" in doc and "clk" in doc:
        return "linkage-schema"
    if doc.keys() & {"thresholds", "blocking", "training", "comparisons", "retention_days"}:
        return "run-config"
    return None


def validate_example(doc, fmt: str, source: str) -> None:
    """validate_document, or for a $defs document (NAME#def) the same schema rooted at that definition."""
    name, _, definition = fmt.partition("#")
    if not definition:
        validate_document(doc, name, source)
        return
    schema = schema_document(name)
    sub = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    errors = sorted(jsonschema.Draft202012Validator(sub).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, f"{source}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def check_meaning(doc, fmt: str, source: str) -> None:
    """The loaders' checks beyond the JSON Schema, for formats whose examples are complete documents."""
    if fmt == "linkage-schema":
        from linkage.schema import schema_from_document

        schema_from_document(doc, source)
    elif fmt == "run-config":
        from hub.runconfig import run_config_from_document

        run_config_from_document(doc, source)
    elif fmt == "mapping":
        from agency_kit.mapping import mapping_from_document
        from linkage.schema import load_schema

        mapping_from_document(doc, load_schema("judicial-assistance"), source)


def known_invalid(block: CodeBlock) -> str | None:
    for (page, snippet), why in KNOWN_INVALID_EXAMPLES.items():
        if block.page == page and snippet in block.body:
            return why
    return None


def json_examples() -> list[CodeBlock]:
    out = []
    for path in all_pages():
        page = path.relative_to(DOCS).as_posix()
        out += [b for b in code_blocks(page, path.read_text("utf-8")) if b.lang == "json"]
    return out


EXAMPLES = json_examples()


def _example_params():
    for b in EXAMPLES:
        marks = []
        why = known_invalid(b)
        if why:
            marks.append(pytest.mark.xfail(reason=why, strict=True))
        yield pytest.param(b, marks=marks, id=f"{b.page}:{b.line}")


@pytest.mark.parametrize("block", list(_example_params()))
def test_json_example_validates(block):
    source = f"docs/{block.page}:{block.line}"
    declared = block.attrs.get("schema")
    if declared == "none":
        pytest.skip("declared schema=none")
    try:
        doc = json.loads(block.body)
    except json.JSONDecodeError as e:
        if declared:
            pytest.fail(f"{source}: declares schema={declared} but is not JSON: {e}")
        pytest.skip("an illustration, not a JSON document (declares no schema)")
    fmt = declared or detect_format(doc)
    if fmt is None:
        assert not (isinstance(doc, dict) and "version" in doc), (
            f"{source}: looks like a document (has 'version') but its format is not recognised: "
            "declare it with schema=NAME in the info string")
        pytest.skip("a fragment, not a document")
    if fmt == "none":
        pytest.skip("a document without a JSON Schema")
    name = fmt.partition("#")[0]
    assert name in SCHEMAS, f"{source}: schema={fmt} names no schema in schemas/"
    try:
        validate_example(doc, fmt, source)
    except AidlinkError as e:
        pytest.fail(f"{source}: the {fmt} example does not validate:\n{e.message}")
    if "invalid" in block.attrs:
        with pytest.raises(AidlinkError):
            check_meaning(doc, fmt, source)
    else:
        try:
            check_meaning(doc, fmt, source)
        except AidlinkError as e:
            pytest.fail(f"{source}: the {fmt} example is refused by its loader:\n{e.message}")


def test_every_format_has_a_valid_example_on_its_page():
    """Each reference page shows at least one whole document of its format that validates."""
    have = set()
    for b in EXAMPLES:
        try:
            doc = json.loads(b.body)
        except json.JSONDecodeError:
            continue
        fmt = b.attrs.get("schema") or detect_format(doc)
        if not fmt or fmt == "none" or known_invalid(b) or "invalid" in b.attrs:
            continue
        name = fmt.partition("#")[0]
        if REFERENCE.get(name) and REFERENCE[name].page == b.page and "#" not in fmt:
            have.add(name)
    # manifest and roster examples live in package.md only as tables and prose today
    assert have >= set(SCHEMAS) - {"manifest", "roster"}, f"formats without an example: {set(SCHEMAS) - have}"


def test_detect_format_on_shipped_documents():
    """The key-based detection recognises the documents the project ships."""
    assert detect_format(json.loads((ROOT / "schemas" / "judicial-assistance.linkage.json").read_text("utf-8"))) \
        == "linkage-schema"
    assert detect_format(json.loads((ROOT / "schemas" / "judicial-assistance.rules.json").read_text("utf-8"))) \
        == "rules"
    assert detect_format({"version": 1, "thresholds": {}}) == "run-config"
    assert detect_format({"version": 1, "federation": "x", "agencies": []}) == "roster"
