"""Reasons in plain words and actions that fit, from the groups declared once in features.groups."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.catalogue import CATALOGUE, feature_group
from features.catalogue import NOT_A_REASON
from features.groups import ACTION_KEYS, ACTIONS, DERIVED, GROUPS, LAPSE_REASONS
from models.reasons import (action_texts, actionable_reasons, choose_actions, clue_groups, condition_names, profile_text,
                            reason_sentence, reason_texts, recommended_action, template_fields)

AS_OF = pd.Timestamp("2025-10-20")
FEATURES = {f.name for f in CATALOGUE}


def test_sentences_use_the_customers_own_numbers_and_dates():
    row = {"tenure_days": 63.0, "first_outbound_observed": 0.0, "orders_total": 1.0, "days_since_last_order": 63.0,
           "nps_last_score": 4.0, "nps_change": -5.0, "days_since_last_nps": 8.0,
           "complaints_open": 2.0, "oldest_open_complaint_days": 19.0}
    assert reason_sentence("attention", row, AS_OF) == "No contact from us for 63 days since the first order on 18 Aug 2025"
    assert reason_sentence("nps", row, AS_OF) == "Detractor: NPS 4 on 12 Oct 2025, down from 9"
    assert reason_sentence("complaints", row, AS_OF) == "2 complaints open, the oldest for 19 days"
    assert reason_sentence("purchases", row, AS_OF) == "Bought once, 63 days ago (18 Aug 2025), no second order yet"
    regular = {"orders_total": 6.0, "days_since_last_order": 90.0, "mean_gap_days": 30.0, "overdue_ratio": 3.0}
    assert reason_sentence("purchases", regular, AS_OF) == "No order for 90 days since 22 Jul 2025: 3.0x their usual 30 days between orders"
    assert reason_sentence("purchases", {"orders_total": 2.0, "days_since_last_order": 1.0}, AS_OF) == \
        "Last order 1 day ago (19 Oct 2025); 2 orders in all"
    # two orders a day apart are no rhythm to be 80x behind: the sentence says what is known
    twice = {"orders_total": 2.0, "days_since_last_order": 80.0, "mean_gap_days": 1.0, "overdue_ratio": 80.0,
             "orders_90d": 1.0, "orders_365d": 2.0}
    assert reason_sentence("purchases", twice, AS_OF) == "Last order 80 days ago (1 Aug 2025); 2 orders in all"
    same_day = {**regular, "orders_total": 3.0, "mean_gap_days": 0.4, "overdue_ratio": 200.0}
    assert "their usual" not in reason_sentence("purchases", same_day, AS_OF)
    assert reason_sentence("purchases", {**regular, "mean_gap_days": 1.0, "overdue_ratio": 90.0}, AS_OF) == \
        "No order for 90 days since 22 Jul 2025: 90.0x their usual 1 day between orders"
    assert reason_sentence(None, row, AS_OF) is None
    assert reason_sentence("nps", {}, AS_OF) == "Never answered an NPS survey: we do not know how they feel"


def test_a_template_applies_only_when_its_fields_are_known():
    # an open complaint without its age falls through to the next template that can be written
    frame = pd.DataFrame({"complaints_open": [1.0, 1.0], "oldest_open_complaint_days": [12.0, np.nan],
                          "days_since_last_complaint": [12.0, 40.0]})
    assert reason_texts(["complaints", "complaints"], frame, AS_OF).tolist() == [
        "1 complaint open for 12 days", "A complaint on 10 Sep 2025"]


def test_every_group_is_declared_once_with_reason_templates_and_actions():
    for group in GROUPS:
        assert group.tables, group.name
        if group.context:
            # context: a profile column (or, for the time of year, nothing to show), never a reason
            assert (group.profile or group.name in NOT_A_REASON) and not group.reasons, group.name
            continue
        assert group.reasons, f"feature group {group.name!r} has no reason template"
        assert group.reasons[-1].when is None, f"{group.name}: the last template must always apply"
        assert group.actions and set(group.actions) <= set(ACTION_KEYS) and "win_back" not in group.actions
        assert any(f.group == group.name for f in CATALOGUE), f"{group.name} has no catalogue entry"
    assert {f.group for f in CATALOGUE} <= {g.name for g in GROUPS}
    assert feature_group("attr_vip") == "attributes"


def test_templates_and_conditions_read_only_catalogue_features():
    known = FEATURES | set(DERIVED) | {"silence_days", "lapsed_by_silence"}
    templates = [t for g in GROUPS for t in g.reasons] + list(LAPSE_REASONS)
    for t in templates:
        assert {name for name, _ in template_fields(t.text)} <= known, t.text
        assert condition_names(t.when) <= known, t.when
    for a in ACTIONS:
        assert condition_names(a.when) <= FEATURES, a.when
    for expr in DERIVED.values():
        assert condition_names(expr) <= FEATURES


def test_actions_fit_the_leading_reason_and_where_the_client_is():
    rows = pd.DataFrame([
        {"tenure_days": 40.0, "orders_total": 1.0},                                     # first 100 days
        {"tenure_days": 300.0, "orders_total": 1.0},                                    # one order, months ago
        {"tenure_days": 400.0, "orders_total": 6.0, "overdue_ratio": 2.5},              # a regular slipping
        {"tenure_days": 400.0, "orders_total": 6.0, "overdue_ratio": 0.5},              # a regular on rhythm
        {"tenure_days": 400.0, "orders_total": 6.0, "complaints_open": 1.0},
        {"tenure_days": 400.0, "orders_total": 6.0, "complaints_open": 0.0},            # complaint resolved
        {"tenure_days": 400.0, "orders_total": 6.0, "nps_last_score": 3.0},
        {"tenure_days": 400.0, "orders_total": 6.0, "nps_last_score": 8.0},
    ])
    lead = ["purchases", "purchases", "purchases", "purchases", "complaints", "complaints", "nps", "nps"]
    assert choose_actions(lead, rows).tolist() == [
        "onboarding", "check_in", "loyalty", "check_in", "service_recovery", "check_in", "nps_follow_up", "check_in"]
    # onboarding never outside the first 100 days, whatever leads
    assert "onboarding" not in choose_actions(["attention", "lifecycle"], rows.iloc[[1, 2]]).tolist()
    assert choose_actions([None], rows.iloc[[0]]).tolist() == [None]


def test_action_words_are_configurable_by_key():
    assert action_texts(["nps_follow_up", None], {"nps_follow_up": "Call from the founder"}).tolist() == \
        ["Call from the founder", None]
    assert recommended_action("complaints", {"complaints_open": 2}).startswith("Service-recovery call")
    assert recommended_action("purchases", {"orders_total": 1, "tenure_days": 20}).startswith("Onboarding call")


def test_unknown_action_key_in_the_settings_is_a_config_error(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.settings import SettingsError, load_settings

    path = tmp_path / "bad.yaml"
    path.write_text("score:\n  actions:\n    complaints: Call them\n")
    with pytest.raises(SettingsError, match="unknown action key.*complaints"):
        load_settings(path)
    result = CliRunner().invoke(app, ["score", "--config", str(path), "--out", str(tmp_path / "out"),
                                      "--data", str(tmp_path), "--home", str(tmp_path / "home")])
    assert result.exit_code == 2 and "config error" in result.output
    path.write_text("score:\n  actions:\n    service_recovery: Call from the head of service\n")
    assert load_settings(path).score.actions == {"service_recovery": "Call from the head of service"}


def test_the_profile_is_context_never_a_reason():
    groups = pd.DataFrame({"reason_group_1": ["attributes", "nps", None], "reason_group_2": ["purchases", "attributes", None],
                           "reason_group_3": ["nps", "complaints", None]})
    assert actionable_reasons(groups).to_numpy().tolist() == [
        ["purchases", "nps", None], ["nps", "complaints", None], [None, None, None]]
    frame = pd.DataFrame({"segment": ["trade", None], "acquisition_channel": pd.Categorical(["referral", "none"]),
                          "region": ["United Kingdom", "north"], "attr_vip": [1.0, np.nan]})
    assert profile_text(frame).tolist() == ["segment: trade; channel: referral; region: United Kingdom; vip: 1",
                                            "region: north"]
    assert reason_texts(["attributes"], frame.head(1), AS_OF).tolist() == [None]


def test_win_back_clues_name_the_likely_reasons_a_client_left():
    frame = pd.DataFrame({"complaints_open": [1.0, 0.0, 0.0], "complaints_365d": [1.0, 0.0, 0.0],
                          "nps_last_score": [4.0, 9.0, np.nan], "days_since_last_outbound": [200.0, 10.0, 120.0],
                          "first_outbound_observed": [1.0, 1.0, 1.0], "bank_balance": [1.0, 1.0, 1.0]})
    clues = clue_groups(frame, 2)
    assert clues.to_numpy().tolist() == [["complaints", "nps"], [None, None], ["attention", None]]
