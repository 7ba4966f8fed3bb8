"""Behaviour tests for key derivation; known-answer vectors are in test_vectors_keys.py."""

import pytest

from linkage.keys import LinkageSecret


def test_derived_keys_are_separated_by_purpose_schema_and_field():
    s = LinkageSecret(bytes(range(32)))
    keys = {
        s.derive("bloom", "a", "name"), s.derive("bloom", "a", "phone"),
        s.derive("clk", "a", "name"), s.derive("bloom", "b", "name"),
    }
    assert len(keys) == 4


def test_key_check_value_equal_for_equal_secrets_only():
    a, b = LinkageSecret(b"\x01" * 32), LinkageSecret(b"\x01" * 32)
    assert a.key_check_value() == b.key_check_value()
    assert a.key_check_value() != LinkageSecret(b"\x02" * 32).key_check_value()


def test_secret_repr_redacted_and_length_checked():
    s = LinkageSecret.generate()
    assert s.value.hex() not in repr(s)
    with pytest.raises(TypeError):
        LinkageSecret(b"short")
    with pytest.raises(ValueError):
        s.derive("nonsense", "x")
