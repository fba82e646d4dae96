"""Settings of the feature builder (part of the pipeline's one settings object)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BankAccountWeights(BaseModel):
    """The emotional bank account: deposits minus withdrawals, each decayed by its age.

    balance(c) = sum over events e before c of weight(e) * 0.5 ** ((c - t_e) / half_life_days)
                 - open_complaint_day * (days each still-open complaint has been open at c)
    """
    model_config = ConfigDict(extra="forbid")
    half_life_days: float = Field(90.0, gt=0)
    order: float = 1.0
    outbound_touch: float = 0.5
    resolved_complaint: float = 1.0
    promoter_answer: float = 2.0
    complaint: float = -2.0
    detractor_answer: float = -2.0
    open_complaint_day: float = Field(0.05, ge=0, description="withdrawal per day a complaint stays open (not decayed)")


class FeatureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active_window_days: int = Field(365, gt=0, description="non-contractual data: a customer with no order in this many days before a cutoff is no longer a client")
    bank: BankAccountWeights = BankAccountWeights()
    channel_min_share: float = Field(0.02, ge=0, le=1, description="an interaction channel gets its own features when it holds at least this share of interactions before the cutoff")
    max_channels: int = Field(8, ge=0)
    btyd: bool = Field(True, description="fit the BG/NBD buy-till-you-die model at each cutoff")
    btyd_sample: int = Field(50_000, gt=100, description="fit BG/NBD parameters on at most this many customers, apply to everyone")
    btyd_horizon_days: int = Field(90, gt=0, description="horizon of the BG/NBD summaries (set to the label horizon)")
