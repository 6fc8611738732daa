"""The BentoML service: ``/hints``, ``/targets``, probes and the staff page (wiring only).

Start it with ``nbp serve`` (or ``bentoml serve serving.service:NbpService`` with
``NBP_HOME`` and ``NBP_TOKENS`` set). The work is done by
:class:`serving.engine.Recommender`, loaded once when the worker starts.

Endpoints
    ``POST /hints``    ``{"customer_id", "lang"?, "bank_code"?}``: the customer's products (schemas.HintResponse)
    ``POST /profile``  the same request and scope: the customer's profile for the staff page, its products
                       included (schemas.ProfileResponse, ``serving/profile.py``)
    ``POST /targets``  ``{"product", "branch_id"?, "manager_id"?, "top", "campaign_id"?, "lang"?, "bank_code"?}``
    ``POST /audit``    ``{"bank_code"?, "limit"?}``: the latest audit records (admin roles; their bank's)
    ``POST /campaigns`` ``{"bank_code"?}``: the bank's campaigns with their measured lift (marketing and
                       admin roles; ``training.campaign_report.page_summaries``)
    ``POST /segments`` ``{"where" | "name", "as_of"?, "save_as"?, "top"?, "bank_code"?}``: a segment (客群) of
                       the bank's customers, counted by branch and tier (marketing and admin roles;
                       ``serving/segments.py``)
    ``POST /quality``  ``{"bank_code"?, "branch_id"?}``: completeness of the customer fields per ingest date
                       and branch (``training.quality_report.page_data``; a branch token: its branch only)
    ``GET /healthz``   the process answers (no token)
    ``GET /readyz``    which products are ready (no token: codes only; an admin token: the
                       detail); 503 while no product can be served; per bank in a federation
    ``GET /staff/``    the page for branch staff (static, with a strict Content-Security-Policy;
                       it calls ``/hints`` with the token)
    ``GET /campaigns/`` the campaigns page for marketing (same policy; it calls ``/campaigns``), and
                       ``/campaigns/guide``, how to read it (``docs/campaigns-guide.zh-CN.md``)
    ``GET /quality/``  the data-quality page for admin and marketing (same policy; it calls ``/quality``)

A federation workspace is served by one service: one :class:`serving.engine.Recommender`
per member bank, and every request answered by the one of its token's bank
(:meth:`NbpService.tenant`), so another bank's customer is simply unknown (404) and
another bank's list is refused (403); ``federation_admin`` names the bank of each request.

Every API call needs ``Authorization: Bearer <token>`` (serving.auth) and is
recorded in the audit trail (serving.audit). ``POST /hints`` and ``POST /targets``
are plain ASGI routes (:class:`_Endpoint`, in :data:`api_app`, mounted with
``bentoml.asgi_app``), not ``@bentoml.api`` methods: BentoML's per-request handling
of those (input model, method lookup, response wrapping) costs as much CPU as a hint,
and it parses the body before the token can be checked
(docs/decisions/007-one-api-route.md). The ASGI middleware :class:`_Gate` sits in
front of everything: it limits every request body (:data:`MAX_BODY`, 413), and on the
two API paths checks the token before it reads the body (401), then the content type
(415). The routes check the strict request models of :mod:`serving.schemas` (400,
422) and answer; ``/targets`` runs in a thread of its own so a heavy list never holds
the event loop that answers hints. BentoML's access log, Prometheus ``/metrics`` and
OpenTelemetry spans are off (:data:`SERVICE_CONFIG`). Errors are answered as
``{"error": message, "status": code}`` with the status of :mod:`serving.errors`; an
unexpected error answers 500 with a request id and never a traceback (it goes to the
server log).

Only ``NBP_HOME`` and ``NBP_TOKENS`` come from the environment, plus
``NBP_CONFIG`` (the ``--config`` overlay, set by ``nbp serve`` for its server).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import re
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import bentoml
import pydantic_core
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from nbp import telemetry
from nbp.config import load_config
from nbp.errors import NbpError
from nbp.workspace import CHECKOUT, Workspace
from serving.audit import AuditLog, tail_audit
from serving.auth import (
    FEDERATION_ADMIN,
    Principal,
    Tenancy,
    authenticate,
    authorize_branch,
    authorize_role,
    bank_scope,
    branch_scope,
    fingerprint_key,
    load_tokens,
    presented_fingerprint,
)
from serving.engine import Recommender
from serving.errors import Forbidden, Unavailable, Unprocessable, to_http_error
from serving.profile import customer_profile, warm_profiles
from serving.schemas import (
    MAX_AUDIT,
    AuditRequest,
    AuditResponse,
    CampaignsRequest,
    CampaignsResponse,
    ErrorResponse,
    HintRequest,
    HintResponse,
    ProfileRequest,
    ProfileResponse,
    QualityRequest,
    QualityResponse,
    SegmentsRequest,
    SegmentsResponse,
    TargetRequest,
    TargetResponse,
    TargetRow,
    request_problem,
)
from serving.segments import SegmentWorkbook, segment_answer
from training.campaign_report import page_summaries
from training.quality_report import page_data

log = logging.getLogger(__name__)

CONFIG_ENV = "NBP_CONFIG"
STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
PROBES = ("/healthz", "/readyz")
API = ("/hints", "/targets", "/audit", "/campaigns", "/profile", "/segments", "/quality")
CAMPAIGN_FILES = {  # the campaigns page under /campaigns/: URL name -> file in STATIC
    "index.html": "campaigns.html",
    "campaigns.js": "campaigns.js",
    "campaigns.css": "campaigns.css",
    "signin.js": "signin.js",  # sign-in shared with the quality page
}
CAMPAIGN_GUIDE = CHECKOUT / "docs" / "campaigns-guide.zh-CN.md"
GATE_PASSED = "nbp.gate"  # the scope key by which the gate hands (service, principal) to the route
SERVER_HEADER = "BentoML Service/nbp"  # what BentoML's own answers carry
MAX_BODY = 64 * 1024  # bytes; a hint or list request is under 1 KiB
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
# The staff page runs only its own script and style (no inline code, nothing from elsewhere) and
# talks only to this service.
STAFF_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
LIST_THREADS = 1  # target lists computed at once per worker; more would only contend for the GIL
PROFILE_THREADS = 1  # profiles read Parquet files: off the event loop, and not queued behind a list
# While a list is computed in its thread, the event loop's thread waits for the GIL each time it wants
# it back: after every SQLite read and LightGBM call a hint makes. Python hands the GIL over after the
# switch interval, 5 ms by default, so one hint could wait 5 ms several times; 0.5 ms bounds that.
GIL_SWITCH_S = 0.0005


def error_response(status: int, message: str) -> JSONResponse:
    """The body of every refused request: ``{"error": message, "status": status}``."""
    return JSONResponse({"error": message, "status": status}, status_code=status)


def model_response(model: BaseModel | bytes | Response) -> Response:
    """An answer serialised once, by pydantic: the model's own JSON, as ``application/json``.

    ``model`` may be that JSON already (``target_json``), or a response already built (a
    segment's workbook). The routes (:class:`_Endpoint`) send it as it is; nothing validates
    or dumps the model again.
    """
    if isinstance(model, Response):
        return model
    body = model if isinstance(model, bytes) else model.model_dump_json().encode("utf-8")
    return Response(body, media_type="application/json")


def target_json(df: Any, product: str) -> bytes:
    """The ``/targets`` answer for a target list frame (engine.target_list): the very JSON of
    :class:`serving.schemas.TargetResponse`, written without building 500 row models.

    The rows are plain dicts with the model's fields in its order, serialised by
    pydantic-core in one call (same float, string and null formatting as the model's own
    ``model_dump_json``; ``test_answers_are_serialised_once_with_a_length`` checks the
    round trip). Row models and their validation cost more than the contact policy, all
    of it holding the GIL while hints wait.
    """

    def _opt(col: str) -> list[str | None]:
        v = df[col]
        return [None if m else str(x) for x, m in zip(v.tolist(), v.isna().tolist(), strict=True)]

    def _opt_float(col: str) -> list[float | None]:
        if col not in df.columns:
            return [None] * len(df)
        v = df[col].astype(float)
        return [None if m else x for x, m in zip(v.tolist(), v.isna().tolist(), strict=True)]

    rank = df["rank"]
    bank = df.attrs.get("bank_code")
    cols = {
        "bank_code": [bank] * len(df),
        "customer_id": df["customer_id"].astype(str).tolist(),
        "branch_id": _opt("branch_id"),
        "manager_id": _opt("manager_id"),
        "product": df["product"].astype(str).tolist(),
        "propensity": df["propensity"].astype(float).tolist(),
        "uplift": _opt_float("uplift"),
        "rank": [None if m else int(x) for x, m in zip(rank.tolist(), rank.isna().tolist(), strict=True)],
        "control": df["control"].astype(bool).tolist(),
        "reasons": [list(r) for r in df["reasons"]] if "reasons" in df.columns else [[]] * len(df),
        "tier": df["tier"].tolist() if "tier" in df.columns else [None] * len(df),
    }
    assert tuple(cols) == tuple(TargetRow.model_fields), "target_json: fields out of step with TargetRow"
    keys = list(cols)
    rows = [dict(zip(keys, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]
    head = TargetResponse.model_construct(
        product=product,
        bank_code=bank,
        campaign_id=df.attrs["campaign_id"],
        list_date=df.attrs["list_date"],
        rank_by=df.attrs.get("rank_by", "propensity"),
        rank_by_note=df.attrs.get("rank_by_note"),
        reissued=bool(df.attrs.get("reissued", False)),
        rows=[],
    ).model_dump_json()
    assert head.endswith('"rows":[]}')
    return head[:-3].encode("utf-8") + pydantic_core.to_json(rows) + b"}"


class _Probes:
    """ASGI middleware answering ``/healthz`` and ``/readyz`` with JSON.

    BentoML's own probes answer a bare newline; ours say which products are ready.
    Without a token ``/readyz`` gives readiness only (per product: ready, target
    lists, and a short code for why not), never a path or an error's text; with an
    admin token it gives the full detail (:meth:`serving.engine.Recommender.readiness`).
    In a federation workspace it answers per bank (:meth:`NbpService.readiness`).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in PROBES:
            await self.app(scope, receive, send)
            return
        svc = _started_service()
        if scope["path"] == "/healthz":
            resp: Response = JSONResponse({"status": "ok"})
        elif svc is None:
            resp = JSONResponse({"ready": False, "error": "the service is still loading"}, status_code=503)
        else:
            body = svc.readiness(svc.admin_of(_headers(scope, b"authorization")))
            resp = JSONResponse(body, status_code=200 if body["ready"] else 503)
        resp.headers.update(SECURITY_HEADERS)
        await resp(scope, receive, send)


def _headers(scope: dict, name: bytes) -> list[str]:
    """Every value of one request header (lower-case ``name``), in order."""
    return [v.decode("latin-1") for k, v in scope["headers"] if k == name]


class _Gate:
    """ASGI middleware in front of the probes, the staff page and the routes: it refuses before it reads.

    For every request, the body is limited to :data:`MAX_BODY` bytes: a
    ``Content-Length`` above it is refused with 413 before a byte of the body is
    read, and a body without one (chunked) is counted as it streams in and refused
    as soon as it passes the limit (at most the limit is ever held in memory).

    On every route of :data:`API` (``POST /hints``, ``/targets``, ...), in this order: exactly one
    ``Authorization`` header (two: 400) and a known token (401), before the body is
    read; the body limit (413); a JSON content type (415). The principal goes on to
    the endpoint (:class:`_Endpoint`) in the scope, with the body read whole. Every
    refusal here is audited and none carries a traceback.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in API and scope["method"] == "POST" else None
        svc = _started_service()
        if endpoint is not None and svc is None:
            await _answer(error_response(503, "the service is still loading; retry shortly"), scope, receive, send)
            return
        audit = functools.partial(svc.record, endpoint) if endpoint is not None else None
        principal = None
        if endpoint is not None:
            auths = _headers(scope, b"authorization")
            if len(auths) > 1:
                await _refuse(400, "send exactly one Authorization header", scope, receive, send, audit)
                return
            try:
                principal = svc.authenticate(auths[0] if auths else None)
            except NbpError as e:
                fp = svc.presented_fingerprint(auths[0] if auths else None)
                await _refuse(to_http_error(e).status, str(e), scope, receive, send, audit, token_fp=fp)
                return
        lengths = _headers(scope, b"content-length")
        if lengths and (len(set(lengths)) > 1 or not _DIGITS.fullmatch(lengths[0].strip())):
            await _refuse(400, "invalid Content-Length header", scope, receive, send, audit, principal)
            return
        if lengths and int(lengths[0]) > MAX_BODY:
            await _refuse(413, f"request body over {MAX_BODY:,} bytes", scope, receive, send, audit, principal)
            return
        if endpoint is not None:
            ctypes_ = _headers(scope, b"content-type")
            if ctypes_ and ctypes_[-1].split(";", 1)[0].strip().lower() != "application/json":
                await _refuse(415, "send the body as application/json", scope, receive, send, audit, principal)
                return
        body = await _read_body(receive, MAX_BODY)
        if body is None:  # the client left
            return
        if body is _TOO_LARGE:
            await _refuse(413, f"request body over {MAX_BODY:,} bytes", scope, receive, send, audit, principal)
            return
        if endpoint is not None:
            scope[GATE_PASSED] = (svc, principal)
        await self.app(scope, _replay(body, receive), send)


class _Endpoint:
    """The ASGI app of one route of :data:`API` (``POST /hints``, ``/targets``, ...), behind :class:`_Gate`.

    The strict request model (:mod:`serving.schemas`: 400 for a body that is not a
    JSON object, 422 naming the fields), then :meth:`NbpService.answer_hints` on the
    event loop (about a millisecond of CPU, less than a hand-over to a thread costs on
    a busy machine), or :meth:`NbpService.answer_targets` and
    :meth:`NbpService.answer_audit` in the service's list thread (a heavy list or a long
    trail never holds the event loop that answers hints). A request without
    the gate's principal is refused (401): the route never answers unauthenticated.
    """

    def __init__(self, path: str, model: type[BaseModel]) -> None:
        self.path = path
        self.model = model

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        svc, principal = scope.get(GATE_PASSED, (None, None))
        if principal is None:
            await _answer(error_response(401, "no authenticated principal"), scope, receive, send)
            return
        audit = functools.partial(svc.record, self.path)
        body = await _read_body(receive, MAX_BODY)  # the gate's replay: whole, within the limit
        if body is None:
            return
        try:
            req = self.model.model_validate_json(body)
        except ValidationError as e:
            status, message = request_problem(e)
            params = _known_params(body, self.model)
            await _refuse(status, message, scope, receive, send, audit, principal, params=params)
            return
        if isinstance(req, HintRequest):
            resp = svc.answer_hints(req.customer_id, req.lang, principal, req.bank_code)
        elif isinstance(req, SegmentsRequest):
            resp = await asyncio.get_running_loop().run_in_executor(
                svc.lists, functools.partial(svc.answer_segments, req, principal)
            )
        else:
            answer = {
                TargetRequest: svc.answer_targets,
                CampaignsRequest: svc.answer_campaigns,
                ProfileRequest: svc.answer_profile,
                QualityRequest: svc.answer_quality,
            }.get(type(req), svc.answer_audit)
            pool = svc.profiles if isinstance(req, ProfileRequest) else svc.lists
            resp = await asyncio.get_running_loop().run_in_executor(pool, functools.partial(answer, req, principal))
        await _answer(resp, scope, receive, send)


_DIGITS = re.compile(r"[0-9]+")  # a Content-Length (str.isdigit would take "²")
_TOO_LARGE: Any = object()  # what _read_body answers for a body over the limit


async def _read_body(receive: Any, limit: int) -> Any:
    """The whole request body, :data:`_TOO_LARGE` as soon as it passes ``limit``, None if the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return None
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            return _TOO_LARGE
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)


def _known_params(body: bytes, model: type[BaseModel]) -> dict[str, Any]:
    """The request model's fields found in a refused body, for the audit record (strings are cut there)."""
    try:
        raw = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: raw[k] for k in model.model_fields if k in raw and isinstance(raw[k], (str, int, float, bool))}


async def _answer(resp: Response, scope: dict, receive: Any, send: Any) -> None:
    resp.headers["server"] = SERVER_HEADER
    resp.headers.update(SECURITY_HEADERS)
    await resp(scope, receive, send)


async def _refuse(
    status: int,
    message: str,
    scope: dict,
    receive: Any,
    send: Any,
    audit: Any,
    principal: Principal | None = None,
    token_fp: str | None = None,
    params: dict[str, Any] | None = None,
) -> None:
    """Answer ``{"error", "status"}`` without reading the body further; ``audit`` (the endpoint's
    :meth:`NbpService.record`, None off the API paths) records it."""
    if audit is not None:
        audit(status, principal, token_fp, params or {})
    await _answer(error_response(status, message), scope, receive, send)


def _replay(body: bytes, receive: Any) -> Any:
    """``receive`` that gives ``body`` (already read whole) first, then what ``receive`` gives."""
    sent = False

    async def again() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


def _started_service() -> Any:
    """The running NbpService instance, or None before it has started."""
    try:
        svc = bentoml.get_current_service()
    except Exception:  # noqa: BLE001 - not started yet
        return None
    return svc if getattr(svc, "tenants", None) else None


PAGE_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": STAFF_CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


async def _static(request: Request) -> Response:
    """The staff page and its script and style, with a Content-Security-Policy that allows only them."""
    name = request.path_params.get("name") or "index.html"
    if name not in STATIC_FILES:
        return error_response(404, "not found")
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers=PAGE_HEADERS)


async def _campaigns_static(request: Request) -> Response:
    """The campaigns page, its script and style, and ``guide``: the Chinese explanation of how to
    read it, rendered from Markdown with raw HTML off (the same Content-Security-Policy)."""
    name = request.path_params.get("name") or "index.html"
    if name == "guide":
        return Response(campaign_guide_html(), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)
    return _page_file(CAMPAIGN_FILES, name)


def _page_file(files: dict[str, str], name: str) -> Response:
    """A page's file by its URL name (``files``: URL name -> file in STATIC; any other name is 404)."""
    if name not in files:
        return error_response(404, "not found")
    file = files[name]
    kind = {"html": "text/html", "js": "text/javascript", "css": "text/css"}[file.rsplit(".", 1)[1]]
    return FileResponse(STATIC / file, media_type=f"{kind}; charset=utf-8", headers=PAGE_HEADERS)


@functools.cache
def campaign_guide_html() -> str:
    """``docs/campaigns-guide.zh-CN.md`` as a page styled like the campaigns page."""
    from markdown_it import MarkdownIt

    try:
        body = MarkdownIt("commonmark", {"html": False}).enable("table").render(CAMPAIGN_GUIDE.read_text("utf-8"))
    except OSError:
        body = "<p>说明文档未随服务安装（docs/campaigns-guide.zh-CN.md）。</p>"
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>如何阅读营销活动效果</title><link rel="stylesheet" href="campaigns.css"></head>'
        '<body><header><h1>如何阅读营销活动效果</h1><a href="./">返回活动列表</a></header>'
        f'<main class="guide card">{body}</main></body></html>'
    )


class _Api(FastAPI):
    """The app of the API routes (:data:`API`), mounted in BentoML's app: only its router.

    A FastAPI app so that BentoML's OpenAPI document (``/docs``) describes the two
    routes (``bentoml.asgi_app`` merges a mounted FastAPI app's paths); requests go
    straight to the router, as BentoML's middleware (error handling included) already
    wraps every request.
    """

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        scope["app"] = self
        await self.router(scope, receive, send)


class _Route(APIRoute):
    """An API route described by FastAPI (request and response models, from ``doc``'s
    signature) and answered by an :class:`_Endpoint`, without FastAPI's request handling."""

    def __init__(self, path: str, doc: Any, endpoint: _Endpoint) -> None:
        name = path.strip("/")
        super().__init__(path, doc, methods=["POST"], responses=ERROR_RESPONSES, summary=name, operation_id=name)
        self.endpoint_app = endpoint

    async def handle(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["method"] == "GET" and scope["path"] in ("/campaigns", "/quality"):  # the pages end in /
            await RedirectResponse(scope["path"] + "/")(scope, receive, send)
            return
        if scope["method"] != "POST":
            raise HTTPException(405, headers={"Allow": "POST"})
        await self.endpoint_app(scope, receive, send)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": what}
    for status, what in (
        (400, "two Authorization headers, a bad Content-Length, a body that is not a JSON object"),
        (401, "no token, not a bearer token, or an unknown token"),
        (403, "a token asking about another branch or bank, or a role without the right"),
        (404, "unknown customer, branch or manager"),
        (413, f"a body over {MAX_BODY:,} bytes"),
        (415, "a body not sent as application/json"),
        (422, "a body the request model refuses (the fields are named), an unknown product or language"),
        (500, "an unexpected error (a request id; the traceback is in the server log)"),
        (503, "no model, features or batch scores to answer with"),
    )
}


async def _hints_doc(request: HintRequest) -> HintResponse:
    """The customer's products, ranked by expected value, with reasons (zh by default)."""
    raise NotImplementedError  # the signature describes the route; _Endpoint answers


async def _profile_doc(request: ProfileRequest) -> ProfileResponse:
    """The customer's profile for the staff page: tier and trend, holdings, balances, contacts, products."""
    raise NotImplementedError  # the signature describes the route; _Endpoint answers


async def _targets_doc(request: TargetRequest) -> TargetResponse:
    """A ranked target list of one product, after the contact policy."""
    raise NotImplementedError  # the signature describes the route; _Endpoint answers


async def _audit_doc(request: AuditRequest) -> AuditResponse:
    """The latest audit records of the token's bank (admin; federation_admin: any or every bank)."""
    raise NotImplementedError  # the signature describes the route; _Endpoint answers


async def _campaigns_doc(request: CampaignsRequest) -> CampaignsResponse:
    """The campaigns of the token's bank with their measured lift (marketing, admin, federation_admin)."""
    raise NotImplementedError  # the signature describes the route; _Endpoint answers


async def _segments_doc(request: SegmentsRequest) -> SegmentsResponse:
    """A segment (客群) of the token's bank: count, breakdown by branch and tier, first customers (marketing, admin)."""
    raise NotImplementedError  # the signature describes the route; _Endpoint answers


async def _quality_doc(request: QualityRequest) -> QualityResponse:
    """Completeness of the customer fields per ingest date and branch (admin, marketing; a branch token: its own)."""
    raise NotImplementedError  # the signature describes the route; _Endpoint answers


QUALITY_FILES = {
    "index.html": "quality.html",
    "quality.js": "quality.js",
    "quality.css": "quality.css",
    "signin.js": "signin.js",
}


async def _quality_static(request: Request) -> Response:
    """The data-quality page, its script and style (the same Content-Security-Policy as the others)."""
    return _page_file(QUALITY_FILES, request.path_params.get("name") or "index.html")


staff_app = Starlette(routes=[Route("/", _static), Route("/{name:str}", _static)])
campaigns_app = Starlette(routes=[Route("/", _campaigns_static), Route("/{name:str}", _campaigns_static)])
quality_app = Starlette(routes=[Route("/", _quality_static), Route("/{name:str}", _quality_static)])
api_app = _Api(openapi_url=None, docs_url=None, redoc_url=None)
api_app.router.routes += [
    _Route("/hints", _hints_doc, _Endpoint("/hints", HintRequest)),
    _Route("/targets", _targets_doc, _Endpoint("/targets", TargetRequest)),
    _Route("/audit", _audit_doc, _Endpoint("/audit", AuditRequest)),
    _Route("/campaigns", _campaigns_doc, _Endpoint("/campaigns", CampaignsRequest)),
    _Route("/segments", _segments_doc, _Endpoint("/segments", SegmentsRequest)),
    _Route("/profile", _profile_doc, _Endpoint("/profile", ProfileRequest)),
    _Route("/quality", _quality_doc, _Endpoint("/quality", QualityRequest)),
]


# BentoML's per-request extras that this service does not use, switched off: each costs CPU on every
# request (docs/decisions/006-serving-request-path.md). The audit trail (serving.audit) records every
# request instead of the access log; traces are not collected, yet a span would open per request;
# nothing scrapes Prometheus /metrics.
SERVICE_CONFIG: dict[str, Any] = {
    "workers": "cpu_count",
    "threads": 4,
    "traffic": {"timeout": 60},
    "metrics": {"enabled": False},
    "logging": {"access": {"enabled": False}},
    "tracing": {"excluded_urls": ["."]},  # every URL: the OpenTelemetry middleware passes requests straight on
}


def load_tenants(cfg: Any, ws: Workspace, banks: tuple[str, ...]) -> tuple[dict[str, Recommender], dict[str, str]]:
    """One recommender per member bank; a bank that cannot be loaded is left out with its reason,
    so the other banks are still served (its requests answer 503, ``/readyz`` says why).

    Raises:
        NbpError: no member bank could be loaded (the reasons of all of them).
    """
    tenants, unloaded = {}, {}
    for bank in banks:
        try:
            tenants[bank] = Recommender.load(cfg, ws.for_bank(bank))
        except NbpError as e:
            log.error("bank %s is not served: %s", bank, e)
            unloaded[bank] = str(e)
    if not tenants:
        raise NbpError("no member bank can be served: " + " | ".join(f"{b}: {e}" for b, e in unloaded.items()))
    return tenants, unloaded


@bentoml.asgi_app(quality_app, path="/quality", name="quality")
@bentoml.asgi_app(campaigns_app, path="/campaigns", name="campaigns")
@bentoml.asgi_app(staff_app, path="/staff", name="staff")
@bentoml.asgi_app(api_app, path="/", name="api")  # applied first: matched before the staff page
@bentoml.service(name="nbp", **SERVICE_CONFIG)
class NbpService:
    """Next-best-product hints and target lists for branch staff and marketing."""

    def __init__(self) -> None:
        telemetry.disable()
        self.cfg = load_config(os.environ.get(CONFIG_ENV) or None)
        self.ws = Workspace.from_env()
        self.key = fingerprint_key(self.ws, os.environ)
        self.tenancy = Tenancy.of(self.ws)
        self.tokens = load_tokens(self.cfg, os.environ, key=self.key, tenancy=self.tenancy)
        self.audit = AuditLog(self.ws.audit_log)
        # one recommender per member bank of a federation; the single bank's otherwise (also `recommender`)
        self.recommender: Recommender | None = None
        if self.tenancy.federation:
            self.tenants, self.unloaded = load_tenants(self.cfg, self.ws, self.tenancy.banks)
        else:
            self.unloaded: dict[str, str] = {}
            self.recommender = Recommender.load(self.cfg, self.ws)
            self.tenants = {self.recommender.bank: self.recommender}
        self.lists = ThreadPoolExecutor(max_workers=LIST_THREADS, thread_name_prefix="nbp-lists")
        self.profiles = ThreadPoolExecutor(max_workers=PROFILE_THREADS, thread_name_prefix="nbp-profiles")
        sys.setswitchinterval(GIL_SWITCH_S)
        # Feast, MLflow and pandas leave hundreds of thousands of objects behind, and a full collection
        # of them is a pause a request would wait out. Frozen, they are never scanned again (objects
        # made later are collected).
        gc.collect()
        gc.freeze()
        threading.Thread(target=self._warm, name="warm-reasons", daemon=True).start()

    def _warm(self) -> None:
        for rec in self.tenants.values():
            rec.warm_reasons()
            warm_profiles(rec)

    # ------------------------------------------------------------------------ plumbing
    def authenticate(self, header: str | None) -> Principal:
        """The principal of an ``Authorization`` header (serving.auth.authenticate).

        Raises:
            Unauthorized: no header, not a bearer token, or an unknown token.
        """
        return authenticate(header, self.tokens, self.key)

    def presented_fingerprint(self, header: str | None) -> str | None:
        """The keyed fingerprint of the token a header presents (None: none presented)."""
        return presented_fingerprint(header, self.key)

    def admin_of(self, headers: list[str]) -> Principal | None:
        """The principal of a request that carries exactly one header, with an admin or
        federation_admin token; None otherwise."""
        if len(headers) != 1:
            return None
        try:
            p = self.authenticate(headers[0])
        except NbpError:
            return None
        return p if p.role in ("admin", FEDERATION_ADMIN) else None

    def readiness(self, admin: Principal | None) -> dict:
        """``/readyz``: the single bank's readiness as ever; in a federation, per bank.

        The detail (:meth:`Recommender.readiness`) goes to an admin token of the bank
        (in a federation only that bank is listed then) and to ``federation_admin`` (every
        bank); anyone else gets the codes (:meth:`Recommender.public_readiness`).
        ``ready`` is whether any bank serves any product, whoever asks.
        """
        if self.recommender is not None:
            rec = self.recommender
            return rec.readiness() if admin is not None else rec.public_readiness()
        if admin is not None and admin.role == "admin":
            detail = shown_banks = [admin.bank]  # a bank's admin: its own bank only
        else:
            shown_banks = list(self.tenancy.banks)
            detail = shown_banks if admin is not None else []
        banks = {
            b: self.tenants[b].readiness() if b in detail else self.tenants[b].public_readiness()
            for b in shown_banks
            if b in self.tenants
        }
        for b in shown_banks:  # a bank that could not load: not ready, its reason for the admins who see it
            if b in self.unloaded:
                banks[b] = {"ready": False, "status": "unavailable"} | (
                    {"reason": self.unloaded[b]} if b in detail else {}
                )
        return {
            "ready": any(st.ready for rec in self.tenants.values() for st in rec.products.values()),
            "banks": banks,
        }

    def tenant(self, principal: Principal, bank_code: str | None) -> Recommender:
        """The recommender a request is answered from: its token's bank (``federation_admin``: the bank it names).

        Raises:
            Forbidden: the request names another bank than the token's (or than the single
                bank's recorded code).
            Unprocessable: a ``federation_admin`` request names no bank.
            NotFound: a ``federation_admin`` request names a bank that is not a member.
        """
        if self.recommender is not None:
            own = self.recommender.bank
            if bank_code is not None and bank_code != own:
                raise Forbidden(
                    f"this token sees only its own bank '{own}'"
                    if own
                    else "this workspace holds one bank and records no bank code: leave out bank_code"
                )
            return self.recommender
        bank = bank_scope(principal, bank_code, self.tenancy.banks)
        if bank in self.unloaded:
            raise Unavailable(f"bank '{bank}' is not being served: it could not be loaded at start-up (see /readyz)")
        return self.tenants[bank]

    def audit_bank(self, principal: Principal | None, bank_code: str | None = None) -> str | None:
        """The bank an audit record names: the single bank's, else the token's own bank, else
        (``federation_admin``) the member bank the request names; None when not known."""
        if self.recommender is not None:
            return self.recommender.bank
        if principal is None:
            return None
        if principal.role == FEDERATION_ADMIN:
            return bank_code if bank_code in self.tenants else None
        return principal.bank

    def _another_banks(self, principal: Principal, rec: Recommender, branch: str | None, manager: str | None) -> None:
        """Refuse a list of another bank's branch or manager (403), before this bank says it does not know it (404).

        Raises:
            Forbidden: a bank's token names a branch or manager that only another member bank knows.
        """
        if principal.role == FEDERATION_ADMIN:
            return
        others = [r for r in self.tenants.values() if r is not rec]
        if (branch is not None and not rec.knows_branch(branch) and any(r.knows_branch(branch) for r in others)) or (
            manager is not None and not rec.knows_manager(manager) and any(r.knows_manager(manager) for r in others)
        ):
            raise Forbidden(f"this token sees only its own bank '{principal.bank}'")

    def record(
        self,
        endpoint: str,
        status: int,
        principal: Principal | None,
        token_fp: str | None,
        params: dict[str, Any],
        rows: int = 0,
    ) -> None:
        """Audit one answer of an API route; a failed write goes to the log, the answer still goes out."""
        bank = params.get("bank_code")
        try:
            self.audit.record(
                endpoint=endpoint,
                status=status,
                principal=principal,
                token_fp=token_fp,
                params=params,
                rows=rows,
                bank_code=self.audit_bank(principal, bank if isinstance(bank, str) else None),
            )
        except OSError:
            log.exception("audit: cannot write %s", self.audit.path)

    def _call(self, endpoint: str, principal: Principal, params: dict[str, Any], work: Any) -> Response:
        """Run ``work(principal)``, audit, and turn errors into answers; the answer's status is on the response."""
        rows, status = 0, 200
        try:
            result, rows = work(principal)
            return model_response(result)
        except NbpError as e:
            err = to_http_error(e)
            status = err.status
            if status >= 500:
                log.warning("%s: %d: %s", endpoint, status, err)
            return error_response(status, str(err))
        except Exception:
            status = 500
            rid = uuid.uuid4().hex[:12]
            log.exception("%s: unexpected error (request %s)", endpoint, rid)
            return error_response(500, f"internal error; the server log has the details (request {rid})")
        finally:
            self.record(endpoint, status, principal, None, params, rows)

    def answer_hints(self, customer_id: str, lang: str, principal: Principal, bank_code: str | None = None) -> Response:
        """``/hints`` for an authenticated principal (:class:`_Endpoint`).

        The customer is looked up in the token's bank only: another bank's customer is
        unknown there, and answers the very 404 of an id no bank has.
        """

        def work(p: Principal) -> tuple[HintResponse, int]:
            rec = self.tenant(p, bank_code)
            authorize_branch(p, rec.branch_of(customer_id))
            out = rec.hints(customer_id, lang)  # type: ignore[arg-type]
            return out, len(out.products)

        params = {"customer_id": customer_id, "lang": lang, "bank_code": bank_code}
        return self._call("/hints", principal, params, work)

    def answer_profile(self, req: ProfileRequest, principal: Principal) -> Response:
        """``/profile``: scoped exactly as :meth:`answer_hints` (the token's bank, then its branch), in the
        profile thread; audited with the number of products shown."""

        def work(p: Principal) -> tuple[ProfileResponse, int]:
            rec = self.tenant(p, req.bank_code)
            authorize_branch(p, rec.branch_of(req.customer_id))
            out = customer_profile(rec, req.customer_id, req.lang)
            return out, len(out.products)

        return self._call("/profile", principal, req.model_dump(), work)

    def answer_targets(self, req: TargetRequest, principal: Principal) -> Response:
        """``/targets`` for an authenticated principal (:class:`_Endpoint`, in the list thread).

        Authorisation comes before any lookup, and its refusals name the token's own
        branch (or bank) only: a branch token learns nothing about other branches or their
        managers. A branch or manager of another member bank is 403, like another branch.
        """

        def work(p: Principal) -> tuple[bytes, int]:
            rec = self.tenant(p, req.bank_code)
            branch = branch_scope(p, req.branch_id)
            self._another_banks(p, rec, req.branch_id, req.manager_id)
            if p.role == "branch" and req.manager_id is not None:
                rec.check_scope(None, req.manager_id)  # 404 for an unknown manager
                authorize_branch(p, rec.manager_branch(req.manager_id))
            df = rec.target_list(req.product, branch, req.manager_id, req.top, req.campaign_id, req.lang, req.rank_by)
            return target_json(df, req.product), len(df)

        return self._call("/targets", principal, req.model_dump(), work)

    def answer_audit(self, req: AuditRequest, principal: Principal) -> Response:
        """``/audit``: the latest records of the trail (in the list thread).

        ``admin`` reads its bank's records (a single-bank workspace: every record);
        ``federation_admin`` every bank's, or the one it names. Other roles: 403.
        """

        def work(p: Principal) -> tuple[AuditResponse, int]:
            authorize_role(p, "admin", FEDERATION_ADMIN)
            if not 1 <= req.limit <= MAX_AUDIT:
                raise Unprocessable(f"limit={req.limit} is outside 1..{MAX_AUDIT:,}")
            if p.role == FEDERATION_ADMIN and req.bank_code is None:
                bank, keep = None, None  # every bank's records, the refused tokens' included
            else:
                rec = self.tenant(p, req.bank_code)
                bank = rec.bank
                keep = None if self.recommender is not None else (lambda r: r.get("bank_code") == bank)
            records = tail_audit(self.audit.path, req.limit, keep)
            return AuditResponse(bank_code=bank, records=records), len(records)

        return self._call("/audit", principal, req.model_dump(), work)

    def answer_campaigns(self, req: CampaignsRequest, principal: Principal) -> Response:
        """``/campaigns``: the campaigns of the token's bank and their lift (in the list thread;
        cached per process until the export or a campaign changes). Branch tokens: 403."""

        def work(p: Principal) -> tuple[CampaignsResponse, int]:
            authorize_role(p, "marketing", "admin", FEDERATION_ADMIN)
            rec = self.tenant(p, req.bank_code)
            rows = page_summaries(self.cfg, rec.ws)
            export = rec.ws.export_date()
            out = CampaignsResponse(
                bank_code=rec.bank,
                export_date=export.isoformat() if export else None,
                min_arm_customers=self.cfg.campaigns.min_arm_customers,
                campaigns=rows,
            )
            return out, len(rows)

        return self._call("/campaigns", principal, req.model_dump(), work)

    def answer_segments(self, req: SegmentsRequest, principal: Principal) -> Response:
        """``/segments``: a segment of the token's bank's customers only (in the list thread), as JSON or
        as a workbook; a bad filter, name or as-of is 422 naming what is wrong. Branch tokens: 403."""

        def work(p: Principal) -> tuple[SegmentsResponse | Response, int]:
            authorize_role(p, "marketing", "admin", FEDERATION_ADMIN)
            rec = self.tenant(p, req.bank_code)
            out, rows = segment_answer(self.cfg, rec.ws, req, created_by=f"{p.role}:{p.fingerprint}")
            if isinstance(out, SegmentWorkbook):  # a download: the file's name in UTF-8 (RFC 6266)
                name = f"attachment; filename=\"segment.xlsx\"; filename*=UTF-8''{quote(out.filename)}"
                return Response(out.data, media_type=XLSX, headers={"Content-Disposition": name}), rows
            return out, rows

        return self._call("/segments", principal, req.model_dump(), work)

    def answer_quality(self, req: QualityRequest, principal: Principal) -> Response:
        """``/quality``: the data-quality figures of the token's bank (in the list thread). Every role may
        read them; a branch token gets its own branch only (another branch: 403, before any lookup)."""

        def work(p: Principal) -> tuple[QualityResponse, int]:
            rec = self.tenant(p, req.bank_code)
            branch = branch_scope(p, req.branch_id)
            if branch is not None:
                rec.check_scope(branch, None)  # 404 for an unknown branch
            body = page_data(self.cfg, rec.ws, branch)
            return QualityResponse(bank_code=rec.bank, branch_id=branch, **body), len(body["branches"])

        return self._call("/quality", principal, req.model_dump(), work)


# The first middleware added is the outer one: the body limit and the token check come before the
# probes and BentoML's routing.
NbpService.add_asgi_middleware(_Gate)
NbpService.add_asgi_middleware(_Probes)

__all__ = ["MAX_BODY", "SERVICE_CONFIG", "NbpService", "error_response", "model_response", "target_json"]
