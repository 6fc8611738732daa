"""Request/response models and the hand-made 422 checks (serving/schemas.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.errors import Unprocessable
from serving.schemas import (
    MAX_TOP,
    HintRequest,
    HintRow,
    TargetRequest,
    TargetRow,
    validate_product,
    validate_top,
)


def test_hint_request_defaults_to_chinese_and_rejects_other_languages() -> None:
    assert HintRequest(customer_id="C1").lang == "zh"
    assert HintRequest(customer_id="C1", lang="en").lang == "en"
    with pytest.raises(ValidationError):
        HintRequest(customer_id="C1", lang="fr")
    with pytest.raises(ValidationError):
        HintRequest(customer_id="")
    with pytest.raises(ValidationError):
        HintRequest(customer_id="C1", token="x")  # extra fields are refused


def test_target_request_types_only_range_is_checked_by_hand() -> None:
    req = TargetRequest(product="consumer")
    assert (req.top, req.branch_id, req.manager_id, req.campaign_id) == (100, None, None, None)
    # Out of range passes the model; validate_top answers it with 422, naming the allowed range.
    assert TargetRequest(product="consumer", top=20_000).top == 20_000
    schema = TargetRequest.model_json_schema()["properties"]["top"]
    assert (schema["minimum"], schema["maximum"]) == (1, MAX_TOP)
    with pytest.raises(ValidationError):
        TargetRequest(product="consumer", top="many")


@pytest.mark.parametrize("top", [1, 100, MAX_TOP])
def test_validate_top_accepts_range(top: int) -> None:
    assert validate_top(top) == top


@pytest.mark.parametrize("top", [0, -5, MAX_TOP + 1])
def test_validate_top_rejects_with_422(top: int) -> None:
    with pytest.raises(Unprocessable, match=f"top={top}") as err:
        validate_top(top)
    assert err.value.status == 422


def test_validate_product_lists_valid_products() -> None:
    products = {"consumer": {}, "business_flow": {}, "tax_linked": {}}  # as cfg.products: keys count
    assert validate_product("consumer", products) == "consumer"
    with pytest.raises(Unprocessable) as err:
        validate_product("credit_card", products)
    assert err.value.status == 422
    assert "unknown product 'credit_card'" in str(err.value)
    assert all(p in str(err.value) for p in products)


def test_response_rows_serialise() -> None:
    hint = HintRow(
        customer_id="C1",
        branch_id="B01",
        product="consumer",
        product_name="消费贷",
        propensity=0.31,
        expected_value=0.31,
        percentile_in_branch=92.5,
        eligible=True,
        reasons=["近6个月月均代发工资：1.2万元"],
    )
    assert hint.model_dump()["reason_not_offered"] is None
    row = TargetRow(
        customer_id="C1", branch_id="B01", manager_id=None, product="consumer", propensity=0.3, rank=None, control=True
    )
    assert row.model_dump(mode="json") == {
        "bank_code": None,  # every row carries its bank; None where the workspace records no code
        "customer_id": "C1",
        "branch_id": "B01",
        "manager_id": None,
        "product": "consumer",
        "propensity": 0.3,
        "uplift": None,
        "rank": None,
        "control": True,
        "reasons": [],
        "tier": None,
    }


@pytest.mark.parametrize(
    "body",
    [
        '{"product": "consumer", "top": "10"}',
        '{"product": "consumer", "top": true}',
        '{"product": "consumer", "top": 10.5}',
        '{"product": 7}',
        '{"product": "consumer", "branch_id": "' + "B" * 65 + '"}',
    ],
)
def test_target_request_is_strict_json(body: str) -> None:
    from pydantic import ValidationError

    from serving.schemas import request_problem

    with pytest.raises(ValidationError) as err:
        TargetRequest.model_validate_json(body)
    status, message = request_problem(err.value)
    assert status == 422 and "B" * 33 not in message


def test_hint_request_limits_the_id_and_refuses_non_objects() -> None:
    from pydantic import ValidationError

    from serving.schemas import request_problem

    with pytest.raises(ValidationError):
        HintRequest.model_validate_json('{"customer_id": "' + "C" * 65 + '"}')
    for body, status in (("[1, 2]", 400), ("{oops", 400), ('{"customer_id": 17}', 422)):
        with pytest.raises(ValidationError) as err:
            HintRequest.model_validate_json(body)
        assert request_problem(err.value)[0] == status
