"""Request and response models of the service (pydantic 2).

The request models are strict: a field is only what JSON says it is (``"top": "10"``
or ``"top": true`` is not an integer, ``"customer_id": 17`` is not a string), unknown
fields are refused, and every id is at most :data:`MAX_ID` characters. The service
parses a request body with them itself (``serving.service``) and answers a body
they refuse with **422**, naming the fields (:func:`request_problem`; a body that is
not a JSON object is **400**). The checks that need the configuration (an unknown
product, ``top`` outside 1..``serving.max_top``) are :func:`validate_product` and
:func:`validate_top`, which raise :class:`serving.errors.Unprocessable` (422) too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from serving.errors import Unprocessable, shown
from serving.segment_filter import MAX_CHARS as MAX_FILTER_CHARS

log = logging.getLogger(__name__)

MAX_TOP = 10_000
DEFAULT_TOP = 100
MAX_ID = 64  # longest id a request may carry (customer, branch, manager, campaign, product)
MAX_AUDIT = 1_000  # most audit records one /audit answer holds
MAX_SEGMENT_ROWS = 1_000  # most customers one /segments answer lists


def _bank_field() -> Any:
    return Field(
        None,
        min_length=1,
        max_length=MAX_ID,
        description="member bank; a bank's token may leave it out (its own), a federation_admin token names it",
    )


Lang = Literal["zh", "en"]
RankBy = Literal["propensity", "uplift", "value"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HintRequest(_Request):
    """``/hints``: the products to suggest to one customer."""

    customer_id: str = Field(min_length=1, max_length=MAX_ID, description="客户号")
    lang: Lang = Field("zh", description="language of the reasons: zh (default) or en")
    bank_code: str | None = _bank_field()


class ProfileRequest(_Request):
    """``/profile``: one customer's profile for the staff page (same fields and scope as ``/hints``)."""

    customer_id: str = Field(min_length=1, max_length=MAX_ID, description="客户号")
    lang: Lang = Field("zh", description="language of the labels and reasons: zh (default) or en")
    bank_code: str | None = _bank_field()


class TargetRequest(_Request):
    """``/targets``: a ranked list of customers for one product."""

    product: str = Field(min_length=1, max_length=MAX_ID, description="a key of configs/products.yaml, e.g. consumer")
    branch_id: str | None = Field(
        None, min_length=1, max_length=MAX_ID, description="支行; a branch token gets its own"
    )
    manager_id: str | None = Field(None, min_length=1, max_length=MAX_ID, description="客户经理")
    top: StrictInt = Field(
        DEFAULT_TOP,
        description=f"number of treatment rows, a JSON integer 1..{MAX_TOP} (checked by validate_top: 422)",
        json_schema_extra={"minimum": 1, "maximum": MAX_TOP},
    )
    campaign_id: str | None = Field(
        None, min_length=1, max_length=MAX_ID, description="fixes the control group; default per product and month"
    )
    lang: Lang = Field("zh", description="language of the reasons: zh (default) or en")
    rank_by: RankBy = Field(
        "propensity",
        description="propensity (default), uplift (the modelled effect of a contact) or value (expected value)",
    )
    bank_code: str | None = _bank_field()


class AuditRequest(_Request):
    """``/audit``: the latest records of the audit trail (admin roles only)."""

    bank_code: str | None = _bank_field()
    limit: StrictInt = Field(
        100,
        description=f"most recent records wanted, 1..{MAX_AUDIT}",
        json_schema_extra={"minimum": 1, "maximum": MAX_AUDIT},
    )


class CampaignsRequest(_Request):
    """``/campaigns``: the campaigns of the token's bank with their measured lift (marketing and admin roles)."""

    bank_code: str | None = _bank_field()


class SegmentsRequest(_Request):
    """``/segments``: the customers a filter (or a saved segment) selects at an as-of date (marketing and
    admin roles); give ``where`` or ``name``."""

    where: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_FILTER_CHARS,
        description='filter, e.g. tier == "高端" and score_consumer >= 0.2 (docs/segments.md)',
    )
    name: str | None = Field(
        None, min_length=1, max_length=MAX_ID, description="a saved segment's name, instead of where"
    )
    as_of: str | None = Field(
        None,
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        description="ISO as-of date, a built month start (default: the saved segment's, else the latest built)",
    )
    save_as: str | None = Field(
        None, min_length=1, max_length=MAX_ID, description="also save the filter under this name, pinned to its as-of"
    )
    top: StrictInt = Field(
        DEFAULT_TOP,
        description=f"customers listed in rows, 0..{MAX_SEGMENT_ROWS} (the count covers them all)",
        json_schema_extra={"minimum": 0, "maximum": MAX_SEGMENT_ROWS},
    )
    format: Literal["json", "xlsx"] = Field(
        "json", description="json (default), or xlsx: the whole segment as a workbook with Chinese headers"
    )
    bank_code: str | None = _bank_field()


def request_problem(err: ValidationError) -> tuple[int, str]:
    """The status and message answering a body a request model refused.

    Returns:
        400 when the body is not JSON or not a JSON object; else 422 with up to three
        fields and what is wrong with each. The message never repeats the input, and a
        field name the client made up is cut (serving.errors.shown).
    """
    errors = err.errors(include_input=False, include_url=False, include_context=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return 400, "the body is not valid JSON"
    if any(not e["loc"] for e in errors):
        return 400, "the body must be a JSON object"
    parts = [f"{'.'.join(shown(x, 24) for x in e['loc'])}: {e['msg']}" for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return 422, "invalid request: " + "; ".join(parts) + more


class HintRow(_Model):
    """One product suggested to one customer."""

    customer_id: str
    branch_id: str | None
    product: str
    product_name: str = Field(description="name in the request's language")
    propensity: float | None = Field(
        description="calibrated probability of uptake within the horizon; None when the product's model is unavailable"
    )
    expected_value: float | None = Field(description="propensity × the product's value (None: no model)")
    percentile_in_branch: float | None = Field(description="0..100, among the branch's candidates for the product")
    eligible: bool
    reason_not_offered: str | None = Field(None, description="set when the product is not suggested")
    reasons: list[str] = Field(default_factory=list, description="up to three, strongest first")


class HintResponse(_Model):
    """``/hints`` answer: the customer's products, best expected value first."""

    customer_id: str
    bank_code: str | None = Field(None, description="the bank whose customer this is (None: no bank code recorded)")
    lang: Lang
    products: list[HintRow]
    tier: str | None = Field(None, description="value tier 客户价值层级 at the latest built month (None: not built)")


class TierPoint(_Model):
    """The customer's value tier at one as-of date (``features/tiers.py``)."""

    as_of: str = Field(description="ISO as-of date (a month start); the tier uses the 12 months before it")
    level: int | None = Field(description="index into tiers.levels, 0 = the highest tier (None: not scored)")
    tier: str | None = Field(description="the tier's label in the request's language")
    score: float | None = Field(description="contribution score 综合贡献度, 0-100")


class MonthFigures(_Model):
    """One month of the balance and turnover sparklines."""

    month: str = Field(description="YYYY-MM, the month the figures cover (the month before an as-of date)")
    balance: float | None = Field(description="average daily balance of the month (None: unknown)")
    turnover: float | None = Field(description="money in and out of the customer's accounts in the month")


class Holding(_Model):
    """One kind of account, service or active loan the customer holds at the as-of date."""

    kind: Literal["account", "service", "loan"]
    key: str = Field(description="the export's enum value (bankexport/spec.py)")
    name: str = Field(description="name in the request's language")
    count: int | None = Field(None, description="active loans of the product (loans only)")


class ContactRow(_Model):
    """One recorded contact (``contacts`` table), with its outcome."""

    contact_date: str
    product: str
    product_name: str
    channel: str | None
    channel_name: str | None
    outcome: str | None
    outcome_name: str | None
    campaign_id: str | None


class MissingField(_Model):
    """A profile field the bank does not know yet for the customer (客户信息待完善)."""

    field: str
    name: str


class ProfileResponse(_Model):
    """``/profile`` answer: what a manager reads about one customer before a call."""

    customer_id: str
    bank_code: str | None = Field(None, description="the bank whose customer this is (None: no bank code recorded)")
    branch_id: str | None
    lang: Lang
    as_of: str | None = Field(description="ISO as-of date of the tier and holdings (the latest built month)")
    tier: TierPoint | None = Field(description="the tier at as_of (None: no tier built)")
    tier_trend: Literal["up", "down", "same"] | None = Field(
        description="tier at as_of against the first month of tier_history (None: fewer than two months)"
    )
    tier_history: list[TierPoint] = Field(description="the last 12 built months, oldest first")
    tenure_months: int | None = Field(description="months since the customer's first relationship with the bank")
    holdings: list[Holding]
    months: list[MonthFigures] = Field(description="the last 12 months, oldest first")
    contacts: list[ContactRow] = Field(description="the last contacts, newest first")
    products: list[HintRow] = Field(description="the next-best products, as /hints answers them")
    products_problem: str | None = Field(None, description="why no product can be suggested now (None: they can)")
    missing_fields: list[MissingField] | None = Field(
        description="applicable profile fields still unknown (None: completeness not available)"
    )
    notes: list[str] = Field(default_factory=list, description="parts of the profile that cannot be shown, and why")


class TargetRow(_Model):
    """One customer of a target list."""

    bank_code: str | None = Field(None, description="the customer's bank (None: no bank code recorded)")
    customer_id: str
    branch_id: str | None
    manager_id: str | None
    product: str
    propensity: float
    uplift: float | None = Field(None, description="modelled effect of a contact on uptake (None: no uplift model)")
    rank: int | None = Field(description="1..top for treatment rows; None for control rows")
    control: bool = Field(description="held out at random: do not contact, used to measure lift")
    reasons: list[str] = Field(default_factory=list)
    tier: str | None = Field(None, description="value tier 客户价值层级 at the latest built month (None: not built)")


class TargetResponse(_Model):
    """``/targets`` answer."""

    product: str
    bank_code: str | None = Field(None, description="the bank whose list this is (None: no bank code recorded)")
    campaign_id: str
    list_date: str = Field(description="ISO date the cool-down and capacity refer to")
    rank_by: str = Field(description="the ranking this list used: propensity, uplift or value")
    rank_by_note: str | None = Field(None, description="why the ranking differs from the one asked (zh/en)")
    reissued: bool = Field(False, description="the campaign's stored list of an earlier request with these parameters")
    rows: list[TargetRow]


class AuditResponse(_Model):
    """``/audit`` answer: the latest records the token may see, oldest first."""

    bank_code: str | None = Field(description="the bank whose records these are (None: every bank)")
    records: list[dict] = Field(description="records of serving.audit, as written")


class CampaignArm(_Model):
    """One arm of a campaign: its customers and their uptakes within the horizon (so far)."""

    customers: int
    uptakes: int
    rate: float | None = Field(description="uptakes / customers (None: an empty arm)")


class CampaignArms(_Model):
    treatment: CampaignArm
    control: CampaignArm


class CampaignDifference(_Model):
    """Uptake rate of treatment minus control, with its 95% interval (Newcombe's hybrid score method)."""

    estimate: float | None
    ci_low: float | None
    ci_high: float | None


class CampaignRow(_Model):
    """One campaign on the campaigns page (``training.campaign_report.page_summaries``)."""

    campaign_id: str
    product: str
    product_name: str = Field(description="the product's Chinese name")
    list_date: str | None = Field(description="ISO date of the campaign's first list")
    days_observed: int = Field(description="days of the horizon the latest export covers")
    horizon_days: int
    arms: CampaignArms
    difference: CampaignDifference
    incremental_uptakes: float | None = Field(description="difference × treatment customers")
    verdict: Literal["effective", "negative", "no_effect", "too_small", "window_open"]
    verdict_zh: str
    note_zh: str = Field(description="why the verdict, in plain Chinese (empty when nothing to add)")


class CampaignsResponse(_Model):
    """``/campaigns`` answer: the bank's campaigns, newest first."""

    bank_code: str | None = Field(description="the bank whose campaigns these are (None: no bank code recorded)")
    export_date: str | None = Field(description="the export the figures were read from")
    min_arm_customers: int = Field(description="fewer customers in an arm: too small to show a difference")
    campaigns: list[CampaignRow]


class SegmentBreakdownRow(_Model):
    """Customers of a segment in one branch and tier."""

    branch_id: str | None
    tier: str | None = Field(description="the tier's key in configs/tiers.yaml (None: no tier at the as-of)")
    tier_name: str = Field(description="the tier's Chinese name (未分层: none)")
    customers: int
    branch_customers: int = Field(description="the branch's customers at the as-of, in every tier")
    share_of_branch: float = Field(description="customers / branch_customers")


class SegmentsResponse(_Model):
    """``/segments`` answer: the count, the breakdown by branch and tier, the first ``top`` customers."""

    bank_code: str | None = Field(description="the bank whose customers these are (None: no bank code recorded)")
    name: str | None = Field(description="the saved segment's name (None: a filter not saved)")
    where: str
    as_of: str = Field(description="ISO as-of date of the features, tiers and scores")
    count: int
    fields: list[str] = Field(description="the fields the filter names")
    breakdown: list[SegmentBreakdownRow]
    columns: dict[str, str] = Field(description="column of rows -> its Chinese header")
    rows: list[dict[str, str | float | int | None]] = Field(description="the first customers, by branch and id")
    saved: bool = Field(False, description="the filter was saved under save_as")


class ErrorResponse(_Model):
    """The body of every refused request (``serving.service.error_response``)."""

    error: str = Field(description="what was wrong, for a person; never a traceback")
    status: int = Field(description="the HTTP status, repeated")


def validate_product(product: str, products: Iterable[str]) -> str:
    """Check that ``product`` is one of ``products`` (e.g. ``cfg.products``).

    Returns:
        ``product`` unchanged.

    Raises:
        Unprocessable: unknown product; the message lists the valid ones.
    """
    valid = sorted(products)
    if product not in valid:
        raise Unprocessable(f"unknown product '{shown(product)}'; valid products: {', '.join(valid)}")
    return product


def validate_top(top: int, max_top: int = MAX_TOP) -> int:
    """Check that ``top`` is within 1..``max_top``.

    Returns:
        ``top`` unchanged.

    Raises:
        Unprocessable: ``top`` is below 1 or above ``max_top``.
    """
    if not 1 <= top <= max_top:
        raise Unprocessable(f"top={top} is outside 1..{max_top}; ask for at most {max_top:,} rows per request")
    return top


class QualityRequest(_Request):
    """``/quality``: completeness of the customer fields per ingest date and branch (admin and marketing
    roles; a branch token sees its own branch)."""

    bank_code: str | None = _bank_field()
    branch_id: str | None = Field(None, min_length=1, max_length=MAX_ID, description="only this branch")


class QualityField(_Model):
    field: str
    zh: str = Field(description="the field's Chinese name")
    applies_zh: str = Field(description="whom the field applies to (the others are not counted)")


class QualityTrend(_Model):
    field: str = Field(description="the field; empty for every field together")
    zh: str
    completeness: list[float | None] = Field(description="known / applicable per date of ``dates``")


class QualityBranch(_Model):
    branch_id: str
    name: str | None = Field(description="from the optional branches table")
    completeness: float | None = Field(description="every field together at the latest date")
    change: float | None = Field(description="since the previous date (None: one date only)")
    applicable: int = Field(description="customer × field pairs the fields apply to")
    known: int
    fields: dict[str, float | None] = Field(description="field -> completeness (None: applies to nobody)")


class QualitySetAside(_Model):
    table: str
    rule: str | None = Field(description="the rule broken (None: the table set nothing aside)")
    rows: int
    rows_read: int


class QualityResponse(_Model):
    """``/quality`` answer (``training.quality_report.page_data``)."""

    bank_code: str | None
    branch_id: str | None = Field(description="the branch the figures are limited to (None: the whole bank)")
    fields: list[QualityField]
    dates: list[str] = Field(description="export dates with figures, oldest first (each ingest records one)")
    trend: list[QualityTrend]
    branches: list[QualityBranch] = Field(description="at the latest date")
    set_aside: list[QualitySetAside] = Field(description="rows ingest set aside at the latest date (not for a branch)")
