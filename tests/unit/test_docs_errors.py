"""docs/errors.md lists every error class with its exit code, and no class is missing."""

import re
from pathlib import Path

from linkage.errors import EXIT_CODES

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_every_error_class_documented_with_its_code():
    rows = dict(re.findall(r"^\| (\d+) \| (\w+) \|", DOC.read_text("utf-8"), re.M))
    documented = {name: int(code) for code, name in rows.items()}
    assert documented == EXIT_CODES


def test_exit_codes_are_distinct():
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)
