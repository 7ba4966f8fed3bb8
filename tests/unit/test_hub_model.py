"""The model: EM rules that never train a comparison on its own blocking columns, the prior, thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from splink import SettingsCreator
from splink.internals.parse_sql import get_columns_used_from_sql
from test_hub_fixtures import tiny_schema

from hub.comparisons import comparison_specs
from hub.model import (
    choose_threshold,
    em_plan,
    em_rule,
    estimate_prior,
    field_dependencies,
    prior_weight,
    probability,
    rule_conflicts,
    settings_dict,
)
from hub.runconfig import RunConfig, Threshold
from hub.store import LshBands, RecordLayout
from linkage.schema import load_schema


def _layout(schema):
    lsh = tuple(LshBands(f.name, 32, 4, 1) for f in schema.filter_fields
                if f.tokeniser.kind in ("char_ngrams", "pinyin_ngrams"))
    return RecordLayout.from_schema(schema, lsh)


def _splink_fixed(settings, rule_sql: str) -> set[str]:
    """What Splink's EMTrainingSession holds fixed for a rule: comparisons sharing a column with it."""
    br_cols = set(get_columns_used_from_sql(rule_sql, "duckdb"))
    return {cc.output_column_name for cc in settings.comparisons
            if br_cols & {c.input_name for c in cc._input_columns_used_by_case_statement}}


SCHEMAS = {"judicial-assistance": load_schema("judicial-assistance"), "febrl": load_schema("febrl"),
           "tiny": tiny_schema()}


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_em_rules_never_train_a_comparison_on_its_own_or_related_columns(name):
    schema = SCHEMAS[name]
    layout = _layout(schema)
    candidates = list(layout.exact + layout.keys) + [b.columns[0] for b in layout.lsh]
    counts = dict.fromkeys(candidates, 5000)
    rules, untrained = em_plan(schema, layout, counts, n_records=10_000)
    settings = SettingsCreator(**settings_dict(schema, layout, RunConfig())).get_settings("duckdb")
    deps = field_dependencies(schema)
    assert untrained == []
    trained_by: dict[str, int] = {}
    for r in rules:
        sql = r.sql(schema, layout)
        fixed_by_splink = _splink_fixed(settings, sql)
        # Splink holds fixed at least every comparison the rule must not train ...
        assert set(r.fixed) <= fixed_by_splink
        # ... and trains only those sharing no dependency with the rule's fields
        rule_fields = set().union(*(deps[f] for c in r.columns for f in _fields_of(c, schema, layout)))
        fields_of = {c.name: c.fields for c in comparison_specs(schema, layout, (0.9,))}
        for comp in settings.comparisons:
            name_ = comp.output_column_name
            if name_ not in fixed_by_splink:
                for f in fields_of[name_]:
                    assert not (deps[f] & rule_fields), (r.columns, name_)
                trained_by[name_] = trained_by.get(name_, 0) + 1
    # every comparison is trained at least once
    assert set(trained_by) == {c.name for c in comparison_specs(schema, layout, (0.9,))}


def _fields_of(column, schema, layout):
    from hub.model import column_fields

    return column_fields(column, schema, layout)


def test_judicial_dependencies_follow_derivation_and_salt():
    s = SCHEMAS["judicial-assistance"]
    deps = field_dependencies(s)
    assert deps["name"] == {"name", "birth_year", "birth_date", "id_number"}  # salted with birth year
    assert deps["birth_date"] == {"birth_date", "id_number"}
    assert deps["phone"] == {"phone"}
    layout = _layout(s)
    # a rule on the ID number must leave the ID comparison (which reads the birth date where the ID
    # is missing) and the (salted) names fixed
    assert rule_conflicts(["eh_id_number"], s, layout) == {"id_number", "name"}
    # a rule on a household value holds the household values' comparison fixed (the phone alone: the
    # shipped schema compares the address only through the CLK)
    assert rule_conflicts(["eh_phone"], s, layout) == {"phone"}
    # a rule on a pinyin band selects pairs salted alike: the names and the ID number (the salt's
    # source) stay fixed
    assert rule_conflicts([_layout(s).lsh[-1].columns[0]], s, layout) == {"name", "id_number"}
    assert em_rule(["eh_id_number"], s, layout).trains == ("phone",)
    assert em_rule(["eh_phone"], s, layout).trains == ("name", "id_number")


def test_the_id_filter_is_held_fixed_on_an_id_hash_rule():
    """The case that motivated the pins: eh_id_number must not train bf_id_number's comparison."""
    s = SCHEMAS["judicial-assistance"]
    layout = _layout(s)
    settings = SettingsCreator(**settings_dict(s, layout, RunConfig())).get_settings("duckdb")
    r = em_rule(["bk_dob_sex"], s, layout)
    sql = r.sql(s, layout)
    assert "IS NOT DISTINCT FROM" in sql
    assert {"id_number", "name"} <= _splink_fixed(settings, sql)
    # without the pins Splink would have trained them on this sample
    assert _splink_fixed(settings, 'l."bk_dob_sex" = r."bk_dob_sex"') == set()


def test_em_plan_skips_rules_with_too_few_or_too_many_pairs():
    s = SCHEMAS["febrl"]
    layout = _layout(s)
    counts = dict.fromkeys(layout.exact + layout.keys, 0)
    counts["eh_state"] = 10_000 * 5000  # one value shared by half the records
    counts["bk_names"] = 3000
    counts["eh_date_of_birth"] = 4000
    rules, untrained = em_plan(s, layout, counts, n_records=10_000)
    assert [r.columns for r in rules] == [("eh_date_of_birth",), ("bk_names",)]  # the one training most first
    assert untrained == []
    rules, untrained = em_plan(s, layout, {"bk_names": 3000}, n_records=10_000)
    assert set(untrained) == {"given_name", "surname"}


def test_configured_em_rules_are_used_as_given():
    s = SCHEMAS["febrl"]
    rules, _ = em_plan(s, _layout(s), {}, 100, configured=[["eh_soc_sec_id"], ["bk_names", "eh_postcode"]])
    assert [r.columns for r in rules] == [("eh_soc_sec_id",), ("bk_names", "eh_postcode")]
    assert set(rules[1].fixed) == {"given_name", "surname", "postcode"}
    assert rules[0].fixed == ("soc_sec_id",)


def test_prior_estimate_recovers_the_share_of_matches():
    rng = np.random.default_rng(0)
    total = 1e8
    n_match = 2000
    true_prior = n_match / total
    # Bayes factors: matches around +30 bits, blocked non-matches around -5 bits
    w = np.r_[rng.normal(30, 3, n_match), rng.normal(-5, 4, 200_000)]
    est = estimate_prior(w, total)
    assert est == pytest.approx(true_prior, rel=0.02)


def test_threshold_probability_and_expected_quality():
    w = np.array([20.0, 10.0, 4.0, 3.0, -1.0, -10.0])
    t = choose_threshold(w, Threshold(match_probability=0.9))
    assert t.match_weight == pytest.approx(math.log2(9))
    assert t.expected_links == 3  # weights 20, 10 and 4 reach log2(9) = 3.17
    p = probability(w)
    assert t.expected_precision == pytest.approx(p[:3].mean())
    assert t.expected_recall == pytest.approx(p[:3].sum() / p.sum())
    auto = choose_threshold(w, Threshold(auto="max_expected_f1"))
    assert 2 <= auto.expected_links <= 4
    assert choose_threshold(w, Threshold(match_weight=0.0)).expected_links == 4


def test_prior_weight_is_log_odds():
    assert prior_weight(0.5) == 0.0
    assert prior_weight(1 / 1025) == pytest.approx(-10)


def test_smoothing_gives_unseen_levels_a_small_probability_not_zero():
    from hub.model import smooth_model, smoothed

    assert smoothed([0.5, 0.5, None], 100) == pytest.approx([50.5 / 101.5, 50.5 / 101.5, 0.5 / 101.5])
    model = {"comparisons": [{"output_column_name": "x", "comparison_levels": [
        {"sql_condition": "a", "is_null_level": True},
        {"sql_condition": "b", "m_probability": 1.0, "u_probability": 0.01},
        {"sql_condition": "c", "m_probability": 0.0},  # u never seen
        {"sql_condition": "ELSE", "u_probability": 0.99},  # m never seen
    ]}]}
    out = smooth_model(model, u_pairs=1e6, m_matches={"x": 1000.0})
    levels = out["comparisons"][0]["comparison_levels"][1:]
    ms = [lv["m_probability"] for lv in levels]
    us = [lv["u_probability"] for lv in levels]
    assert sum(ms) == pytest.approx(1) and sum(us) == pytest.approx(1)
    assert min(ms) > 0 and ms[1] == pytest.approx(0.5 / 1001.5)  # about 1 / (2 n), not 0
    assert us[1] == pytest.approx(0.5 / (1e6 + 1.5))
    assert ms[0] == pytest.approx(1000.5 / 1001.5)  # well-observed levels barely move
    assert "m_probability" not in model["comparisons"][0]["comparison_levels"][3]  # a copy
    untrained = smooth_model(model, u_pairs=1e6, m_matches={})
    assert untrained["comparisons"][0]["comparison_levels"][3].get("m_probability") is None


def test_u_correction_takes_the_sampled_matches_out_of_u():
    from hub.model import correct_u_for_matches

    # 1e6 random pairs, prior 5e-5: 50 of them are matches, 45 of which agree on the ID (m 0.9);
    # 5 chance agreements among the 999,950 non-matches.
    model = {"comparisons": [{"output_column_name": "id", "comparison_levels": [
        {"sql_condition": "a", "is_null_level": True},
        {"sql_condition": "b", "m_probability": 0.9, "u_probability": 50 / 1e6},
        {"sql_condition": "c", "m_probability": 0.1},  # never seen in the sample
        {"sql_condition": "ELSE", "u_probability": 1 - 50 / 1e6},
    ]}, {"output_column_name": "untrained", "comparison_levels": [
        {"sql_condition": "a", "is_null_level": True},
        {"sql_condition": "b", "u_probability": 0.3},
        {"sql_condition": "ELSE", "u_probability": 0.7},
    ]}]}
    out = correct_u_for_matches(model, u_pairs=1e6, prior=5e-5)
    lv = out["comparisons"][0]["comparison_levels"]
    rest_agree = 50 / 1e6 - 5e-5 * 0.9
    rest_else = 1 - 50 / 1e6 - 0.0
    assert lv[1]["u_probability"] == pytest.approx(rest_agree / (rest_agree + rest_else))
    assert lv[1]["u_probability"] == pytest.approx(5e-6, rel=1e-3)  # ten times smaller
    assert lv[2].get("u_probability") is None  # still unseen: smoothing gives it a pseudo-count
    assert sum(x.get("u_probability") or 0 for x in lv[1:]) == pytest.approx(1)
    assert out["comparisons"][1] == model["comparisons"][1]  # no m: nothing to take out
    assert model["comparisons"][0]["comparison_levels"][1]["u_probability"] == 50 / 1e6  # a copy
    unchanged = correct_u_for_matches(model, 1e6, 0.0)["comparisons"][0]["comparison_levels"]
    assert [x.get("u_probability") for x in unchanged] == pytest.approx(
        [x.get("u_probability") for x in model["comparisons"][0]["comparison_levels"]])
    with pytest.raises(ValueError):
        correct_u_for_matches(model, 1e6, 1.0)
