"""The feature groups, declared once: the tables each needs, its catalogue entries, its
reason templates and the actions it can lead to.

``features/build.py`` computes a group's features (and skips a group whose tables are
missing, with the ``skipped`` message), ``features/catalogue.py`` documents them (an entry's
``group`` names its group here), ``models/reasons.py`` phrases a reason from the templates and
picks the action. A new group is added here, with its catalogue entries and its computation;
a test fails when a group that can be a reason has no template.

A reason template is ``Reason(when, text)``: ``when`` is a condition on the customer's
feature row (a ``pandas.eval`` expression; a comparison with a missing value is false), or
``None`` for the fallback; ``text`` has fields ``{column}`` or ``{column:format}`` with the
formats of ``models.reasons.FORMATS`` (``days``, ``ndays``, ``date``, ``int``, ``x``, ``signed``,
``duration``, ``count:word:words``). The first template whose condition holds and whose
fields are all known is the customer's sentence, so each group ends with a template that
always applies.

An action is ``Action(key, when, text)``: the lifecycle place where it fits (``when``, as
above, ``None`` = anywhere on the retention list) and the default words (overridden by
``score.actions``). A group lists the actions its reasons can lead to, in order: a client's
action is the first one of the leading reason's group that fits where the client is.
``win_back`` fits the win-back list only.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reason:
    when: str | None
    text: str


@dataclass(frozen=True)
class Action:
    key: str
    when: str | None
    text: str
    label: str = ""  # a few words for narrow places (the report's tables and filters)


@dataclass(frozen=True)
class FeatureGroup:
    """``context``: a static profile, shown in the lists' ``profile`` column, never a reason.
    ``clue``: on the win-back list (no model explains a former client), the condition under
    which this group is named as a likely reason the client left."""
    name: str
    title: str
    tables: tuple[str, ...]
    skipped: str
    reasons: tuple[Reason, ...] = ()
    actions: tuple[str, ...] = ()
    context: bool = False
    clue: str | None = None
    any_table: bool = False  # the group needs any one of ``tables`` (default: all of them)
    profile: dict[str, str] = field(default_factory=dict)  # context groups: column -> label
    # a summary group (computed from other groups' events) is named as the first group here whose
    # condition holds for the client (None: not a reason for that client); none holds: itself
    stands_for: tuple[tuple[str | None, str | None], ...] = ()


ACTIONS: tuple[Action, ...] = (
    Action("onboarding", "tenure_days < 100",
           "Onboarding call (first 100 days): confirm the choice was right and help them to their next order",
           "Onboarding call"),
    Action("service_recovery", "complaints_open >= 1",
           "Service-recovery call with the complaint owner: fix the open complaint and tell them it is fixed", "Service recovery"),
    Action("nps_follow_up", "nps_last_score <= 6",
           "NPS follow-up: ask what went wrong after their low score and agree a fix", "NPS follow-up"),
    Action("loyalty", "orders_total >= 2 and overdue_ratio >= 1",
           "Loyalty gesture for a regular slipping behind their own rhythm", "Loyalty gesture"),
    Action("check_in", None, "Personal check-in from the account owner: ask how things are going", "Check-in call"),
    Action("win_back", None,
           "Win-back offer: remind them of what they used to buy, deal with why they left, invite them back", "Win-back offer"),
    Action("none", None, "No action needed: keep the regular rhythm of contact", "No action"),
)
ACTION_KEYS = tuple(a.key for a in ACTIONS)
WIN_BACK_ONLY = ("win_back",)

# values derived from the feature row for the templates
DERIVED = {
    "nps_previous": "nps_last_score - nps_change",
    "active_days": "tenure_days - days_since_last_order",
}

GROUPS: tuple[FeatureGroup, ...] = (
    FeatureGroup(
        "purchases", "Buying pattern", ("orders",), "",
        reasons=(
            Reason("orders_total <= 1", "Bought once, {days_since_last_order:ndays} ago "
                   "({days_since_last_order:date}), no second order yet"),
            # a rhythm needs at least two gaps between orders, and a day or more between them
            Reason("overdue_ratio >= 1.2 and orders_total >= 3 and mean_gap_days >= 1",
                   "No order for {days_since_last_order:ndays} since "
                   "{days_since_last_order:date}: {overdue_ratio:x}x their usual {mean_gap_days:ndays} between orders"),
            Reason("orders_90d == 0 and orders_365d > 0", "No order for {days_since_last_order:ndays} (last on "
                   "{days_since_last_order:date}); {orders_total:count:order:orders} in all"),
            Reason("returns_365d >= 1", "{returns_365d:count:returned order:returned orders} in the last year"),
            Reason(None, "Last order {days_since_last_order:ndays} ago ({days_since_last_order:date}); "
                   "{orders_total:count:order:orders} in all"),
        ),
        actions=("onboarding", "loyalty", "check_in")),
    FeatureGroup(
        "attention", "Attention from us", ("interactions",),
        "no interactions table: no touches, silence or channel activity",
        reasons=(
            Reason("first_outbound_observed == 0", "No contact from us for {tenure_days:ndays} since the "
                   "first order on {tenure_days:date}"),
            Reason("first_100d_observed == 1 and outbound_first_100d <= 1",
                   "Only {outbound_first_100d:count:touch:touches} from us in their first 100 days"),
            Reason("days_since_last_outbound >= 45", "No contact from us for {days_since_last_outbound:ndays} "
                   "(last on {days_since_last_outbound:date})"),
            Reason("days_since_last_inbound >= 45", "No activity from the customer for "
                   "{days_since_last_inbound:ndays} (last on {days_since_last_inbound:date})"),
            Reason("longest_silence_days >= 0", "A silence of {longest_silence_days:ndays} with no contact "
                   "either way since the last order"),
            Reason(None, "Little contact from us since the last order"),
        ),
        actions=("onboarding", "check_in"),
        clue="first_outbound_observed == 0 or days_since_last_outbound >= 90"),
    FeatureGroup(
        "nps", "Net Promoter Score", ("nps",), "no nps table",
        reasons=(
            Reason("nps_last_score <= 6 and nps_change < 0", "Detractor: NPS {nps_last_score:int} on "
                   "{days_since_last_nps:date}, down from {nps_previous:int}"),
            Reason("nps_last_score <= 6", "Detractor: NPS {nps_last_score:int} on {days_since_last_nps:date}"),
            Reason("nps_last_score <= 8 and nps_change < 0", "Passive: NPS {nps_last_score:int} on "
                   "{days_since_last_nps:date}, down from {nps_previous:int}"),
            Reason("nps_last_score <= 8", "Passive: NPS {nps_last_score:int} on {days_since_last_nps:date}"),
            Reason("nps_change < 0", "NPS {nps_last_score:int} on {days_since_last_nps:date}, down from "
                   "{nps_previous:int}"),
            Reason("nps_last_score >= 0", "Last NPS answer {nps_last_score:int}, "
                   "{days_since_last_nps:ndays} ago ({days_since_last_nps:date})"),
            Reason(None, "Never answered an NPS survey: we do not know how they feel"),
        ),
        actions=("nps_follow_up", "check_in"),
        clue="nps_last_score <= 6"),
    FeatureGroup(
        "complaints", "Complaints", ("complaints",), "no complaints table",
        reasons=(
            Reason("complaints_open >= 2", "{complaints_open:int} complaints open, the oldest for "
                   "{oldest_open_complaint_days:ndays}"),
            Reason("complaints_open == 1", "1 complaint open for {oldest_open_complaint_days:ndays}"),
            Reason("public_complaints_365d >= 1", "{public_complaints_365d:count:public complaint:public complaints}"
                   " (a review) in the last year"),
            Reason("complaints_90d >= 1", "{complaints_90d:count:complaint:complaints} in the last 90 days"),
            Reason("days_since_last_complaint >= 0", "A complaint on {days_since_last_complaint:date}"),
            Reason(None, "No complaint open; the complaint history raises the risk"),
        ),
        actions=("service_recovery", "check_in"),
        clue="complaints_open >= 1 or complaints_365d >= 1"),
    FeatureGroup(
        "bank", "Relationship balance", ("interactions", "nps", "complaints"),
        "only orders: the emotional bank account would be a decayed order count",
        reasons=(
            Reason("bank_balance <= -0.05", "Relationship in the red ({bank_balance:signed}): recent complaints or "
                   "low scores outweigh what we gave"),
            Reason("bank_balance > -0.05", "Few recent deposits in the relationship (balance {bank_balance:signed})"),
            Reason(None, "Few recent deposits in the relationship"),
        ),
        actions=("service_recovery", "nps_follow_up", "check_in"), any_table=True,
        clue="bank_balance <= -0.05",
        # the balance is deposits (orders, touches from us, resolved complaints, promoter answers) minus
        # withdrawals (complaints, detractor answers): named by what moved it
        stands_for=(("complaints", "bank_balance < 0 and (complaints_open >= 1 or complaints_90d >= 1)"),
                    ("nps", "bank_balance < 0 and nps_last_score <= 6 and days_since_last_nps <= 180"),
                    ("attention", "outbound_90d <= 1"),
                    ("purchases", "orders_90d == 0"),
                    ("complaints", "complaints_open >= 1 or complaints_90d >= 1"),
                    ("nps", "nps_last_score <= 6 and days_since_last_nps <= 180"))),
    FeatureGroup(
        "lifecycle", "Lifecycle stage", ("orders",), "",
        reasons=(
            Reason("tenure_days < 100", "New {lifecycle_stage} on day {tenure_days:days} of the first 100 "
                   "({coleman_phase} phase)"),
            Reason("orders_total <= 1", "Still a one-time buyer {tenure_days:ndays} after the first order"),
            Reason(None, "A {lifecycle_stage} in the {coleman_phase} phase of the relationship"),
        ),
        actions=("onboarding", "loyalty", "check_in"),
        # a stage is where the client is (shown in lifecycle_stage), a reason only in the first 100 days,
        # where little attention from us is what can be acted on (Coleman); a buyer who never came back
        # is a buying pattern
        stands_for=(("attention", "tenure_days < 100 and (first_outbound_observed == 0 or outbound_90d <= 1)"),
                    ("lifecycle", "tenure_days < 100"), ("purchases", "orders_total <= 1"), (None, None))),
    FeatureGroup(
        "attributes", "Profile", ("customers",), "no customer attributes (segment, acquisition_channel, region ...)",
        context=True,
        profile={"segment": "segment", "acquisition_channel": "channel", "region": "region"}),
    FeatureGroup(
        "calendar", "Time of year", ("orders",), "no orders",
        context=True),  # the season moves every client's risk alike at a cutoff: it shapes the risk, never a reason
)

BY_GROUP = {g.name: g for g in GROUPS}
GROUP_NAMES = tuple(g.name for g in GROUPS)
CONTEXT_GROUPS = tuple(g.name for g in GROUPS if g.context)

# the win-back list: the lapse itself is the first reason (see models.score.lapse_reasons)
LAPSE_REASONS: tuple[Reason, ...] = (
    Reason("lapsed_by_silence == 1 and orders_total >= 2 and active_days >= 30", "Nothing from them for "
           "{silence_days:ndays} (no order for {days_since_last_order:ndays}); bought every {mean_gap_days:int} days "
           "for {active_days:duration}"),
    Reason("lapsed_by_silence == 1", "Nothing from them for {silence_days:ndays}; last order on "
           "{days_since_last_order:date} ({orders_total:count:order:orders} in all)"),
    Reason("orders_total >= 2 and active_days >= 30", "No order for {days_since_last_order:ndays}; bought "
           "every {mean_gap_days:int} days for {active_days:duration}"),
    Reason("orders_total >= 2", "No order for {days_since_last_order:ndays}; bought "
           "{orders_total:count:time:times}, every {mean_gap_days:int} days"),
    Reason(None, "No order for {days_since_last_order:ndays} since their only order on "
           "{days_since_last_order:date}"),
)
# the clues are looked at in this order on the win-back list
CLUE_ORDER = ("complaints", "nps", "attention", "bank")


def skipped_groups(table_names) -> dict[str, str]:
    """The groups the tables cannot support, with why (``customers`` without attributes is
    checked by the caller, who can read its columns)."""
    have = set(table_names)
    out = {}
    for g in GROUPS:
        present = [t in have for t in g.tables]
        if not (any(present) if g.any_table else all(present)):
            out[g.name] = g.skipped
    return out
