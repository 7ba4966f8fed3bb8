"""The run configuration document: defaults, validation with JSON paths, meaning checks."""

from __future__ import annotations

import json

import pytest

from hub.runconfig import RunConfig, load_run_config, run_config_from_document
from linkage.documents import validate_document
from linkage.errors import ConfigError


def test_defaults_need_no_file_and_choose_no_threshold_from_labels():
    cfg = load_run_config(None)
    assert cfg.version == 1
    assert cfg.link_threshold.match_probability == 0.9
    assert cfg.effective_cluster_threshold == cfg.link_threshold
    assert cfg.dice_levels == (0.95, 0.85, 0.7)
    assert cfg.blocking.keys is None and cfg.blocking.lsh.enabled and cfg.blocking.clk_candidates.enabled
    assert cfg.training.em_rules is None


def test_the_effective_document_is_itself_valid_and_round_trips():
    doc = RunConfig().as_doc()
    validate_document(doc, "run-config", "effective")
    again = run_config_from_document(doc)
    assert again.as_doc() == doc


def test_a_full_document(tmp_path):
    doc = {
        "version": 1, "purpose": "judicial assistance screening", "legal_basis": "art. 1", "retention_days": 90,
        "seed": 3,
        "thresholds": {"link": {"auto": "max_expected_f1"}, "cluster": {"match_weight": 6}},
        "comparisons": {"dice_levels": [0.9, 0.8]},
        "blocking": {"keys": ["eh_id_number", "bk_dob_sex"], "max_block_size": 50,
                     "lsh": {"enabled": False}, "clk_candidates": {"threshold": 0.75, "k": None}},
        "training": {"u_max_pairs": 1e5, "em_max_pairs": None, "em_rules": [["eh_phone"], ["bk_dob_sex"]]},
    }
    p = tmp_path / "run.json"
    p.write_text(json.dumps(doc))
    cfg = load_run_config(p)
    assert cfg.link_threshold.auto == "max_expected_f1"
    assert cfg.effective_cluster_threshold.match_weight == 6
    assert cfg.blocking.keys == ("eh_id_number", "bk_dob_sex")
    assert cfg.blocking.clk_candidates.k is None
    assert cfg.training.em_rules == (("eh_phone",), ("bk_dob_sex",))
    assert cfg.retention_days == 90


def test_every_problem_is_reported_with_its_path():
    doc = {"version": 2, "thresholds": {"link": {"match_probability": 1.5}}, "colour": "blue",
           "comparisons": {"dice_levels": [0.7, 0.9]}, "blocking": {"keys": ["name"]}}
    with pytest.raises(ConfigError) as ei:
        run_config_from_document(doc, "run.json")
    paths = {p.path for p in ei.value.problems}
    assert {"$.version", "$.thresholds.link.match_probability", "$", "$.blocking.keys"} <= paths
    assert ei.value.exit_code == 3


def test_dice_levels_must_decrease():
    with pytest.raises(ConfigError, match="strictly decreasing"):
        run_config_from_document({"version": 1, "comparisons": {"dice_levels": [0.7, 0.9]}})


def test_a_threshold_is_exactly_one_kind():
    with pytest.raises(ConfigError):
        run_config_from_document({"version": 1, "thresholds": {"link": {"match_probability": 0.9,
                                                                        "match_weight": 3}}})
