"""Loading and validating the JSON documents aidlink reads.

Validation happens on load against the JSON Schemas shipped in ``schemas/``;
every problem is collected with its JSON path and raised together in one
:class:`~linkage.errors.ConfigError`.  Messages describe the rule broken; they
never quote the offending value (a document may be a mapping that names real
columns, but never carries personal data -- still, we keep the habit).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from .errors import ConfigError, Problem


@cache
def schema_document(name: str) -> dict[str, Any]:
    """The JSON Schema ``schemas/<name>.schema.json`` shipped with aidlink."""
    text = resources.files("schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = schema_document(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def json_path(error: jsonschema.ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def describe_error(error: jsonschema.ValidationError) -> str:
    """A value-free description of one validation error."""
    v = error.validator
    if v == "required":
        missing = [m for m in error.validator_value if m not in (error.instance or {})]
        return f"missing required property {', '.join(repr(m) for m in missing)}"
    if v == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"unknown propert{'ies' if len(extra) > 1 else 'y'} {', '.join(repr(e) for e in extra)}"
    if v == "type":
        return f"must be of type {error.validator_value}"
    if v == "enum":
        return f"must be one of {error.validator_value}"
    if v == "const":
        return f"must be {error.validator_value!r}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
             "minItems", "maxItems", "minLength", "maxLength", "minProperties"):
        return f"violates {v} {error.validator_value}"
    if v == "pattern":
        return f"does not match pattern {error.validator_value}"
    if v == "oneOf":
        return "must match exactly one of the allowed forms"
    if v == "not":
        return "uses a combination that is not allowed"
    if v == "propertyNames":
        return "has a property name that is not allowed"
    if v == "format":
        return f"is not a valid {error.validator_value}"
    return f"violates {v}"


def validation_problems(doc: Any, schema_name: str) -> list[Problem]:
    """Every problem of ``doc`` against ``schemas/<schema_name>.schema.json``."""
    validator = _validator(schema_name)
    problems = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        # descend into oneOf/anyOf to report the most specific cause when there is one
        leaves = [e for e in (error.context or []) if e.validator not in ("oneOf", "not")]
        if error.validator == "oneOf" and leaves and len({json_path(e) for e in leaves}) == 1:
            error = leaves[0]
        problems.append(Problem(json_path(error), describe_error(error)))
    return problems


def validate_document(doc: Any, schema_name: str, source: str) -> None:
    """Raise ConfigError listing every problem of ``doc``, or return None."""
    problems = validation_problems(doc, schema_name)
    if problems:
        raise ConfigError(source, problems)


def read_json(path: str | Path) -> Any:
    """Read a JSON file, turning syntax errors into ConfigError with line/column."""
    p = Path(path)
    try:
        text = p.read_text("utf-8-sig")
    except FileNotFoundError as e:
        raise ConfigError(str(p), [Problem("$", "file not found")]) from e
    except UnicodeDecodeError as e:
        raise ConfigError(str(p), [Problem("$", "not UTF-8 text")]) from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(str(p), [Problem("$", f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")]) from e


def load_document(path: str | Path, schema_name: str) -> Any:
    """Read and validate one document file."""
    doc = read_json(path)
    validate_document(doc, schema_name, str(path))
    return doc


def canonical_json(doc: Any) -> bytes:
    """Canonical bytes of a JSON document (sorted keys, no spaces, UTF-8)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
