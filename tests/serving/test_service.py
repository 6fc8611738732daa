"""The BentoML service over HTTP, without a server (its ASGI app), on a tiny trained workspace."""

from __future__ import annotations

from typing import Any

import bentoml
import pytest
from servingkit import TOKENS, TRAINED, UNTRAINED, Built, asgi_post, bearer

from serving.audit import read_audit
from serving.engine import ProductState, Recommender, missing_features

pytestmark = pytest.mark.integration


def _hints(client: Any, customer: str, role: str = "marketing", **kw: Any) -> Any:
    return client.post("/hints", json={"customer_id": customer, **kw}, headers=bearer(role))


# ------------------------------------------------------------------------- probes and auth
def test_probes_answer_without_a_token_and_name_ready_products(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    products = r.json()["products"]
    assert all(products[p]["ready"] for p in TRAINED)
    assert products[UNTRAINED]["ready"] is False and products[UNTRAINED]["status"] == "no_model"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token-at-all-xyz"}, {"Authorization": f"Basic {TOKENS['marketing']}"}],
)
def test_missing_or_wrong_token_is_401(client: Any, built: Built, headers: dict) -> None:
    for path, body in (("/hints", {"customer_id": built.customer}), ("/targets", {"product": "consumer"})):
        r = client.post(path, json=body, headers=headers)
        assert r.status_code == 401
        assert r.json()["status"] == 401 and r.json()["error"]
        assert TOKENS["marketing"] not in r.text


def test_branch_token_sees_only_its_branch(client: Any, built: Built) -> None:
    assert _hints(client, built.customer, "branch").status_code == 200
    r = _hints(client, built.other_customer, "branch")
    assert r.status_code == 403 and built.branch in r.json()["error"]
    r = client.post("/targets", json={"product": "consumer", "branch_id": "B-ELSEWHERE"}, headers=bearer("branch"))
    assert r.status_code == 403
    r = client.post("/targets", json={"product": "consumer", "top": 20}, headers=bearer("branch"))
    assert r.status_code == 200
    assert {row["branch_id"] for row in r.json()["rows"]} == {built.branch}  # no branch named: its own


def test_unknown_customer_404_wrong_product_and_top_422(client: Any) -> None:
    r = _hints(client, "NO-SUCH-CUSTOMER")
    assert r.status_code == 404 and "NO-SUCH-CUSTOMER" in r.json()["error"]
    r = client.post("/targets", json={"product": "mortgage_x"}, headers=bearer("marketing"))
    assert r.status_code == 422
    assert all(p in r.json()["error"] for p in ("consumer", "business_flow", "tax_linked"))
    r = client.post("/targets", json={"product": "consumer", "top": 10_001}, headers=bearer("marketing"))
    assert r.status_code == 422 and "10,000" in r.json()["error"]
    assert _hints(client, "C000000001", lang="fr").status_code == 422


# ------------------------------------------------------------------------- hints
def test_hints_rank_by_expected_value_with_three_reasons_in_chinese(client: Any, built: Built) -> None:
    r = _hints(client, built.customer)
    assert r.status_code == 200
    rows = r.json()["products"]
    assert {row["product"] for row in rows} == set(built.cfg.products)
    offered = [row for row in rows if row["reason_not_offered"] is None]
    evs = [row["expected_value"] for row in offered]
    assert evs == sorted(evs, reverse=True)
    for row in rows:
        if row["propensity"] is not None:
            value = built.cfg.products[row["product"]].value
            assert row["expected_value"] == pytest.approx(row["propensity"] * value)
            assert 0.0 <= row["propensity"] <= 1.0
    scored = [row for row in rows if row["reasons"]]
    assert scored, "no product came with reasons"
    for row in scored:
        assert 1 <= len(row["reasons"]) <= 3
        assert any("\u4e00" <= ch <= "\u9fff" for ch in "".join(row["reasons"]))  # Chinese by default
    # not-offered products come after the offered ones
    flags = [row["reason_not_offered"] is not None for row in rows]
    assert flags == sorted(flags)


def test_hints_and_lists_carry_the_latest_tier(client: Any, built: Built) -> None:
    from features import tiers

    latest = tiers.read(built.ws, as_of=tiers.months(built.ws)[-1]).set_index("customer_id")["tier_level"]
    names = {i: lv.zh for i, lv in enumerate(built.cfg.tiers.levels)}
    assert _hints(client, built.customer).json()["tier"] == names[int(latest[built.customer])]
    assert (
        _hints(client, built.customer, lang="en").json()["tier"]
        == built.cfg.tiers.levels[int(latest[built.customer])].en
    )
    rows = _targets(client, top=30, campaign_id="TIER1").json()["rows"]
    assert rows and all(r["tier"] == names[int(latest[r["customer_id"]])] for r in rows)


def test_hint_propensity_is_the_models_calibrated_probability(client: Any, built: Built) -> None:
    from features.store import online

    rec = bentoml.get_current_service().recommender
    st = rec.products["consumer"]
    x = online(built.cfg, built.ws, [built.customer], st.service)
    row = next(r for r in _hints(client, built.customer).json()["products"] if r["product"] == "consumer")
    assert row["propensity"] == pytest.approx(float(st.model.predict_proba(x)[0]), rel=1e-9, abs=1e-12)


def test_hints_in_english_on_request(client: Any, built: Built) -> None:
    zh = _hints(client, built.customer).json()["products"]
    en = _hints(client, built.customer, lang="en").json()["products"]
    assert [r["product"] for r in zh] == [r["product"] for r in en]
    names = {r["product"]: r["product_name"] for r in en}
    assert names["consumer"] == built.cfg.products["consumer"].name_en
    reasons = [s for r in en for s in r["reasons"]]
    assert reasons and not any("\u4e00" <= ch <= "\u9fff" for ch in "".join(reasons))


def test_missing_champion_degrades_that_product_alone(client: Any, built: Built) -> None:
    rows = {r["product"]: r for r in _hints(client, built.customer).json()["products"]}
    assert rows[UNTRAINED]["propensity"] is None and rows[UNTRAINED]["reason_not_offered"] == "模型暂不可用"
    assert all(rows[p]["propensity"] is not None for p in TRAINED)
    r = client.post("/targets", json={"product": UNTRAINED}, headers=bearer("marketing"))
    assert r.status_code == 503 and "champion" in r.json()["error"]


def test_a_held_product_says_why(client: Any, built: Built) -> None:
    svc = bentoml.get_current_service()
    holders = sorted(svc.recommender.products["consumer"].holders)
    assert holders, "the simulated bank has no consumer-loan holder"
    row = next(r for r in _hints(client, holders[0]).json()["products"] if r["product"] == "consumer")
    assert row["eligible"] is False and row["reason_not_offered"] == "已持有该产品"
    row = next(r for r in _hints(client, holders[0], lang="en").json()["products"] if r["product"] == "consumer")
    assert row["reason_not_offered"] == "already holds this product"


def test_an_ineligible_product_names_the_failed_rule(client: Any, built: Built) -> None:
    svc = bentoml.get_current_service()
    rec = svc.recommender
    rule_texts = {r.zh for r in built.cfg.products["business_flow"].eligibility}
    scored = set(rec.products["business_flow"].scores["customer_id"])
    ineligible = next(
        c for c in rec.customers.index if c not in scored and c not in rec.products["business_flow"].holders
    )
    row = next(r for r in _hints(client, ineligible).json()["products"] if r["product"] == "business_flow")
    assert row["eligible"] is False
    assert any(t in row["reason_not_offered"] for t in rule_texts)


def test_recent_contact_blocks_the_product(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = bentoml.get_current_service().recommender
    cid = rec.products["consumer"].scores["customer_id"].iloc[0]  # scored: eligible, not a holder
    row = next(r for r in _hints(client, cid).json()["products"] if r["product"] == "consumer")
    assert row["reason_not_offered"] is None or row["reason_not_offered"].startswith("近期")
    monkeypatch.setattr(rec, "_recent", rec._recent | {(cid, "consumer")})
    row = next(r for r in _hints(client, cid).json()["products"] if r["product"] == "consumer")
    assert row["reason_not_offered"].startswith("近期已就该产品联系过") and row["eligible"] is False


# ------------------------------------------------------------------------- targets
def test_targets_respect_branch_and_top(client: Any, built: Built) -> None:
    r = client.post(
        "/targets",
        json={"product": "consumer", "branch_id": built.branch, "top": 25, "campaign_id": "T1"},
        headers=bearer("marketing"),
    )
    assert r.status_code == 200
    body = r.json()
    treat = [row for row in body["rows"] if not row["control"]]
    assert len(treat) == 25 and [row["rank"] for row in treat] == list(range(1, 26))
    assert {row["branch_id"] for row in body["rows"]} == {built.branch}
    assert all(row["rank"] is None for row in body["rows"] if row["control"])
    props = [row["propensity"] for row in treat]
    assert props == sorted(props, reverse=True)
    assert all(len(row["reasons"]) <= 3 for row in body["rows"]) and any(row["reasons"] for row in treat)
    again = client.post(
        "/targets",
        json={"product": "consumer", "branch_id": built.branch, "top": 25, "campaign_id": "T1"},
        headers=bearer("marketing"),
    ).json()
    assert [x["customer_id"] for x in again["rows"] if x["control"]] == [
        x["customer_id"] for x in body["rows"] if x["control"]
    ]  # control group fixed per campaign


def _targets(client: Any, **body: Any) -> Any:
    return client.post("/targets", json={"product": "consumer", **body}, headers=bearer("marketing"))


def test_an_issued_list_is_remembered_and_given_again_unchanged(
    client: Any, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from nbp.campaigns import CampaignStore

    rec = bentoml.get_current_service().recommender
    first = _targets(client, top=40, campaign_id="spring-R1").json()
    assert first["reissued"] is False and first["rank_by"] == "propensity"
    # new scores (as after a retrain) must not change a list already issued
    st = rec.products["consumer"]
    shuffled = st.scores.assign(propensity=np.random.default_rng(3).permutation(st.scores["propensity"].to_numpy()))
    monkeypatch.setattr(st, "scores", shuffled)
    monkeypatch.setattr(rec, "_policies", {})
    again = _targets(client, top=40, campaign_id="spring-R1").json()
    assert again["reissued"] is True
    key = [(r["customer_id"], r["rank"], r["control"], r["propensity"]) for r in first["rows"]]
    assert [(r["customer_id"], r["rank"], r["control"], r["propensity"]) for r in again["rows"]] == key
    # other options add a list to the campaign; a customer on both keeps its arm
    other = _targets(client, top=40, campaign_id="spring-R1", branch_id=built.branch).json()
    assert other["reissued"] is False
    arm = {r["customer_id"]: r["control"] for r in first["rows"]}
    shared = [r for r in other["rows"] if r["customer_id"] in arm]
    assert all(arm[r["customer_id"]] == r["control"] for r in shared)
    record = CampaignStore(built.ws.campaigns_dir).meta("spring-R1")
    assert record["product"] == "consumer" and len(record["lists"]) == 2
    assert {x["model_version"] for x in record["lists"]} == {st.version}
    rows = CampaignStore(built.ws.campaigns_dir).issued(["spring-R1"])
    assert set(rows["arm"]) == {"treatment", "control"} and rows["score"].notna().all()
    # a campaign is one product's
    r = _targets(client, product="business_flow", top=5, campaign_id="spring-R1")
    assert r.status_code in (422, 503)
    if r.status_code == 422:
        assert "issued for product 'consumer'" in r.json()["error"]


def test_rank_by_uplift_needs_an_uplift_model_and_says_when_it_falls_back(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    rec = bentoml.get_current_service().recommender
    st = rec.products["consumer"]
    monkeypatch.setattr(st, "scores", st.scores.assign(uplift=np.nan))
    monkeypatch.setattr(rec, "_policies", {})
    body = _targets(client, top=20, campaign_id="up-1", rank_by="uplift").json()
    assert body["rank_by"] == "propensity" and "uplift" in body["rank_by_note"]
    uplift = np.random.default_rng(5).uniform(-0.01, 0.05, len(st.scores))
    monkeypatch.setattr(st, "scores", st.scores.assign(uplift=uplift))
    monkeypatch.setattr(rec, "_policies", {})
    body = _targets(client, top=20, campaign_id="up-2", rank_by="uplift").json()
    assert body["rank_by"] == "uplift" and body["rank_by_note"] is None
    treat = [r["uplift"] for r in body["rows"] if not r["control"]]
    assert len(treat) == 20 and treat == sorted(treat, reverse=True)
    by_prop = _targets(client, top=20, campaign_id="up-2", rank_by="propensity").json()
    assert [r["customer_id"] for r in by_prop["rows"]] != [r["customer_id"] for r in body["rows"]]
    assert _targets(client, top=5, rank_by="luck").status_code == 422


def test_targets_refuse_scores_of_another_model_version(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    st = bentoml.get_current_service().recommender.products["consumer"]
    monkeypatch.setattr(st, "scores", None)
    monkeypatch.setattr(st, "scores_problem", "batch scores come from model version 7, the loaded champion is 1")
    r = client.post("/targets", json={"product": "consumer"}, headers=bearer("marketing"))
    assert r.status_code == 503 and "version 7" in r.json()["error"]


def test_product_scores_check_the_model_version(built: Built) -> None:
    import pandas as pd

    scores = pd.read_parquet(built.ws.latest_scores)
    cust = pd.DataFrame({"customer_id": ["x"], "branch_id": ["b"], "manager_id": [None]}).set_index("customer_id")
    st = ProductState(key="consumer", service="consumer_v1", version=99)
    df, why = Recommender._product_scores(built.ws, st, scores, cust)
    assert df is None and "99" in why
    st.version = int(scores.loc[scores["product"] == "consumer", "model_version"].iloc[0])
    df, why = Recommender._product_scores(built.ws, st, scores, cust)
    assert why is None and len(df) > 0


# ------------------------------------------------------------------------- robustness, audit
def test_a_model_with_features_missing_online_is_not_served(client: Any, built: Built) -> None:
    rec = bentoml.get_current_service().recommender
    st = rec.products["consumer"]
    fake = type("Fake", (), {"features": [*st.model.features, "zz_not_a_feature_6m"]})()
    probe = ProductState(key="consumer", service=st.service, model=fake, version=st.version)
    why, cols = Recommender._check_online(built.cfg, built.ws, probe, [built.customer])
    assert "customer_id" in cols
    assert why is not None and "zz_not_a_feature_6m" in why
    assert missing_features(["a", "b"], ["customer_id", "a"]) == ["b"]


def test_no_servable_product_is_503_with_the_reasons(
    client: Any, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = bentoml.get_current_service().recommender
    for key in TRAINED:
        monkeypatch.setattr(rec.products[key], "problem", f"{key}: 3 feature(s) missing from the online store")
    r = _hints(client, built.customer)
    assert r.status_code == 503 and "missing from the online store" in r.json()["error"]
    assert client.get("/readyz").status_code == 503


def test_an_unexpected_error_is_500_without_a_traceback(
    client: Any, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = bentoml.get_current_service().recommender

    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(rec, "hints", boom)
    r = _hints(client, built.customer)
    assert r.status_code == 500
    assert "Traceback" not in r.text and "secret" not in r.text and "RuntimeError" not in r.text
    assert "request" in r.json()["error"]


def test_every_request_is_audited_without_the_token(client: Any, built: Built) -> None:
    path = built.ws.audit_log
    before = len(read_audit(path))
    _hints(client, built.customer)
    client.post("/hints", json={"customer_id": built.customer}, headers={"Authorization": "Bearer wrong-token-x"})
    _hints(client, "NO-SUCH-CUSTOMER")
    lines = read_audit(path)[before:]
    assert [(x["endpoint"], x["status"]) for x in lines] == [("/hints", 200), ("/hints", 401), ("/hints", 404)]
    assert lines[0]["role"] == "marketing" and lines[0]["rows"] == len(built.cfg.products)
    assert lines[1]["role"] is None and lines[1]["token_fp"]
    text = path.read_text(encoding="utf-8")
    assert all(t not in text for t in TOKENS.values()) and "wrong-token-x" not in text


def test_answers_are_serialised_once_with_a_length(client: Any, built: Built) -> None:
    """/hints and /targets answer the response models' own JSON, with Content-Length (not chunked)."""
    from serving.schemas import HintResponse, TargetResponse

    r = _hints(client, built.customer)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert int(r.headers["content-length"]) == len(r.content) and "transfer-encoding" not in r.headers
    assert HintResponse.model_validate_json(r.content).model_dump_json().encode() == r.content
    r = client.post("/targets", json={"product": "consumer", "top": 200}, headers=bearer("marketing"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert TargetResponse.model_validate_json(r.content).model_dump_json().encode() == r.content
    rows = r.json()["rows"]
    assert any(x["rank"] is None for x in rows) and any(x["reasons"] for x in rows)  # control rows, reasons


def test_bentoml_extras_the_service_does_not_use_are_off(
    client: Any, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No access-log line, no Prometheus /metrics, no OpenTelemetry span per request: the audit
    trail records every request (test above)."""
    import logging

    import opentelemetry.instrumentation.asgi as otel_asgi

    spans: list[str] = []
    real_start = otel_asgi._start_internal_or_server_span

    def start(*a: Any, **k: Any) -> Any:
        spans.append(k.get("span_name", "?"))
        return real_start(*a, **k)

    monkeypatch.setattr(otel_asgi, "_start_internal_or_server_span", start)
    lines: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lines.append  # type: ignore[method-assign]
    access = logging.getLogger("bentoml.access")
    access.addHandler(handler)
    monkeypatch.setattr(access, "level", logging.DEBUG)
    monkeypatch.setattr(access, "disabled", False)
    try:
        assert client.get("/metrics").status_code == 404
        assert _hints(client, built.customer).status_code == 200
        assert (
            client.post("/targets", json={"product": "consumer", "top": 3}, headers=bearer("marketing")).status_code
            == 200
        )
    finally:
        access.removeHandler(handler)
    assert spans == [] and lines == []


def test_hint_requests_the_models_refuse_are_422(client: Any, built: Built) -> None:
    h = bearer("marketing")
    assert client.post("/hints", json={"customer_id": built.customer, "lang": "fr"}, headers=h).status_code == 422
    assert client.post("/hints", json={"customer_id": 17}, headers=h).status_code == 422
    r = client.post("/hints", json={"customer_id": built.customer, "note": "x" * 40_000}, headers=h)
    assert r.status_code == 422 and "note" in r.json()["error"] and "x" * 40 not in r.text


def test_the_api_is_one_route_described_in_the_openapi_document(client: Any, built: Built) -> None:
    """/hints and /targets are the mounted routes: BentoML's /docs.json describes them with the
    request and response models, other methods are 405, and the route itself never answers a
    request that did not pass the gate (the token is checked there)."""
    from serving.schemas import HintRequest, TargetRequest
    from serving.service import api_app

    spec = client.get("/docs.json").json()
    schemas = spec["components"]["schemas"]
    for path, request, response in (
        ("/hints", "HintRequest", "HintResponse"),
        ("/targets", "TargetRequest", "TargetResponse"),
    ):
        post = spec["paths"][path]["post"]
        assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(request)
        assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(response)
        assert {"401", "403", "404", "413", "415", "422", "503"} <= set(post["responses"])
        assert client.get(path, headers=bearer("marketing")).status_code == 405
    assert set(schemas["HintRequest"]["properties"]) == set(HintRequest.model_fields)
    assert set(schemas["TargetRequest"]["properties"]) == set(TargetRequest.model_fields)
    body = b'{"customer_id": "%s"}' % built.customer.encode()
    headers = [(b"authorization", f"Bearer {TOKENS['marketing']}".encode()), (b"content-type", b"application/json")]
    status, _, _ = client.portal.call(asgi_post, api_app, "/hints", headers, iter([body]))
    assert status == 401  # a valid token, but the gate did not see it


def test_nbp_targets_writes_the_same_list_as_the_endpoint(
    client: Any, built: Built, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from nbp.cli import main
    from serving.export import read_target_list

    monkeypatch.setenv("NBP_HOME", str(built.ws.home))
    out = tmp_path / "list.xlsx"
    args = ["targets", "--product", "consumer", "--branch", built.branch, "--top", "30", "--campaign", "C9"]
    res = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = read_target_list(out, {k: p.name_zh for k, p in built.cfg.products.items()})
    api = client.post(
        "/targets",
        json={"product": "consumer", "branch_id": built.branch, "top": 30, "campaign_id": "C9"},
        headers=bearer("marketing"),
    ).json()["rows"]
    api = [r for r in api if not r["control"]] + [r for r in api if r["control"]]  # the file: control group apart
    assert df["customer_id"].tolist() == [r["customer_id"] for r in api]
    assert df["control"].tolist() == [r["control"] for r in api]
    assert df["reasons"].tolist() == [[] if r["control"] else r["reasons"] for r in api]
    assert df["branch_name"].notna().all()  # the simulated bank has a branches table
    bad = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "list.pdf")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output


def test_every_prediction_in_the_service_uses_one_thread_count(
    client: Any, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LightGBM's thread count is process-wide (docs/decisions/004-lightgbm-thread-count.md); the service
    predicts on request threads and on the reasons-warming thread at once, so every call
    must name the same count (engine.SERVING_THREADS), the bulk reasons included."""
    import lightgbm as lgb

    from serving import engine

    calls: list[object] = []
    real = lgb.Booster.predict

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("num_threads"))
        return real(self, *args, **kwargs)

    rec = bentoml.get_current_service().recommender
    monkeypatch.setattr(lgb.Booster, "predict", spy)
    monkeypatch.setattr(rec, "_reason_cache", {})  # computed again, not read from the warm cache
    ids = rec.products["consumer"].scores["customer_id"].head(30).tolist()
    reasons = rec.reasons_for("consumer", ids)
    assert len(reasons) == len(ids) and all(reasons)
    assert rec.warm_reasons() > 0
    assert calls and set(calls) == {engine.SERVING_THREADS}, calls


def test_lists_run_in_the_list_thread_not_on_the_event_loop(
    client: Any, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A heavy /targets never holds the event loop that answers /hints (docs/serving.md)."""
    import sys
    import threading

    from serving.service import GIL_SWITCH_S

    rec = bentoml.get_current_service().recommender
    seen: dict[str, str] = {}
    real_list, real_hints = rec.target_list, rec.hints

    def list_spy(*a: Any, **k: Any) -> Any:
        seen["list"] = threading.current_thread().name
        return real_list(*a, **k)

    def hints_spy(*a: Any, **k: Any) -> Any:
        seen["hints"] = threading.current_thread().name
        return real_hints(*a, **k)

    monkeypatch.setattr(rec, "target_list", list_spy)
    monkeypatch.setattr(rec, "hints", hints_spy)
    r = client.post("/targets", json={"product": "consumer", "top": 5}, headers=bearer("marketing"))
    assert r.status_code == 200
    assert _hints(client, built.customer).status_code == 200
    assert seen["list"].startswith("nbp-lists") and not seen["hints"].startswith("nbp-lists")
    assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_S)
