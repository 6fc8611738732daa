"""The BentoML service: ``/hints``, ``/targets``, probes and the staff page (wiring only).

Start it with ``nbp serve`` (or ``bentoml serve serving.service:NbpService`` with
``NBP_HOME`` and ``NBP_TOKENS`` set). The work is done by
:class:`serving.engine.Recommender`, loaded once when the worker starts.

Endpoints
    ``POST /hints``    ``{"customer_id", "lang"}``: the customer's products (schemas.HintResponse)
    ``POST /targets``  ``{"product", "branch_id"?, "manager_id"?, "top", "campaign_id"?, "lang"?}``
    ``GET /healthz``   the process answers (no token)
    ``GET /readyz``    which products are ready and why the others are not (no token);
                       503 while no product can be served
    ``GET /staff/``    the page for branch staff (static; it calls ``/hints`` with the token)

Every API call needs ``Authorization: Bearer <token>`` (serving.auth) and is
recorded in the audit trail (serving.audit). A well-formed ``POST /hints`` is
answered by the ASGI middleware :class:`_FastHints` with the endpoint's own
function, skipping BentoML's per-request handling (half of the CPU a request cost);
everything else goes through BentoML. BentoML's access log, Prometheus ``/metrics``
and OpenTelemetry spans are off (:data:`SERVICE_CONFIG`). Errors are answered as
``{"error": message, "status": code}`` with the status of
:mod:`serving.errors`; an unexpected error answers 500 with a request id and never
a traceback (it goes to the server log).

Only ``NBP_HOME`` and ``NBP_TOKENS`` come from the environment, plus
``NBP_CONFIG`` (the ``--config`` overlay, set by ``nbp serve`` for its server).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import bentoml
import pandas as pd
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from nbp import telemetry
from nbp.config import load_config
from nbp.errors import NbpError
from nbp.workspace import Workspace
from serving.audit import AuditLog, audit_path
from serving.auth import Principal, authenticate, authorize_branch, branch_scope, fingerprint, load_tokens
from serving.engine import Recommender
from serving.errors import to_http_error
from serving.schemas import DEFAULT_TOP, HintRequest, HintResponse, TargetResponse, TargetRow

log = logging.getLogger(__name__)

CONFIG_ENV = "NBP_CONFIG"
STATIC = Path(__file__).resolve().parent / "static"
PROBES = ("/healthz", "/readyz")
SERVER_HEADER = "BentoML Service/nbp"  # what BentoML's own answers carry


def error_response(status: int, message: str) -> JSONResponse:
    """The body of every refused request: ``{"error": message, "status": status}``."""
    return JSONResponse({"error": message, "status": status}, status_code=status)


def model_response(model: BaseModel) -> Response:
    """An answer serialised once, by pydantic, as BentoML would (same JSON, same media type).

    Returned from the endpoint, it skips BentoML's output handling, which validates the
    model again, dumps it to Python objects and then to JSON, and streams the body.
    """
    return Response(model.model_dump_json().encode("utf-8"), media_type="application/json")


def target_rows(df: Any) -> list[TargetRow]:
    """A target list frame (engine.target_list) as response rows."""
    def _s(v: Any) -> str | None:
        return None if v is None or pd.isna(v) else str(v)

    return [TargetRow(customer_id=str(r.customer_id), branch_id=_s(r.branch_id), manager_id=_s(r.manager_id),
                      product=str(r.product), propensity=float(r.propensity),
                      rank=None if pd.isna(r.rank) else int(r.rank),
                      control=bool(r.control), reasons=list(r.reasons))
            for r in df.itertuples(index=False)]


class _Probes:
    """ASGI middleware answering ``/healthz`` and ``/readyz`` without a token, with JSON.

    BentoML's own probes answer a bare newline; ours say which products are ready.
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
            body = svc.recommender.readiness()
            resp = JSONResponse(body, status_code=200 if body["ready"] else 503)
        await resp(scope, receive, send)


class _FastHints:
    """ASGI middleware answering a well-formed ``POST /hints`` without BentoML's request handling.

    BentoML's route, request context, input model, method lookup (``inspect.signature``
    per call) and response wrapping cost about as much CPU as the recommender itself. A
    JSON body that :class:`serving.schemas.HintRequest` accepts (stricter than the
    endpoint's signature: known fields only, ``customer_id`` 1..64 characters, ``lang``
    zh or en) is answered here by :meth:`NbpService.answer_hints`, the very function the
    endpoint calls (same token check, audit, errors and JSON). Anything else (another
    media type, a malformed or unusual body, the service not started) goes on to BentoML
    unchanged, with the body replayed, so its answers (e.g. 400 on a validation error)
    stay BentoML's.
    """

    MAX_BODY = 16 * 1024  # a larger body is not a plain hint request: BentoML's

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/hints" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        auth, ctype = None, b"application/json"
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v.decode("latin-1")
            elif k == b"content-type":
                ctype = v
        chunks: list[bytes] = []
        size, more = 0, True
        while more and size <= self.MAX_BODY:
            msg = await receive()
            if msg["type"] != "http.request":  # the client left
                return
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        svc = _started_service()
        req = None
        if not more and svc is not None and ctype.split(b";", 1)[0].strip() == b"application/json":
            try:
                req = HintRequest.model_validate_json(body)
            except ValidationError:
                req = None
        if req is None:
            await self.app(scope, _replay(body, more, receive), send)
            return
        resp = svc.answer_hints(req.customer_id, req.lang, auth)
        resp.headers["server"] = SERVER_HEADER
        await resp(scope, receive, send)


def _replay(body: bytes, more: bool, receive: Any) -> Any:
    """``receive`` that gives ``body`` (already read) first, then what ``receive`` gives."""
    sent = False

    async def again() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": more}

    return again


def _started_service() -> Any:
    """The running NbpService instance, or None before it has started."""
    try:
        svc = bentoml.get_current_service()
    except Exception:  # noqa: BLE001 - not started yet
        return None
    return svc if getattr(svc, "recommender", None) is not None else None


async def _staff_page(_: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Referrer-Policy": "no-referrer"})


staff_app = Starlette(routes=[Route("/", _staff_page), Route("/index.html", _staff_page)])


# BentoML's per-request extras that this service does not use, switched off: each costs CPU on
# every request (together about 1 ms of the ~3.5 ms a /hints request cost, measured with
# benchmarks/bench_serving.py). The audit trail (serving.audit) records every request instead of
# the access log; traces were never collected (sample rate 0) but every request still opened a
# span; Prometheus /metrics had no scraper.
SERVICE_CONFIG: dict[str, Any] = {
    "workers": "cpu_count",
    "threads": 4,
    "traffic": {"timeout": 60},
    "metrics": {"enabled": False},
    "logging": {"access": {"enabled": False}},
    "tracing": {"excluded_urls": ["."]},  # every URL: the OpenTelemetry middleware passes requests straight on
}


@bentoml.asgi_app(staff_app, path="/staff", name="staff")
@bentoml.service(name="nbp", **SERVICE_CONFIG)
class NbpService:
    """Next-best-product hints and target lists for branch staff and marketing."""

    def __init__(self) -> None:
        telemetry.disable()
        self.cfg = load_config(os.environ.get(CONFIG_ENV) or None)
        self.ws = Workspace.from_env()
        self.tokens = load_tokens(self.cfg, os.environ)
        self.audit = AuditLog(audit_path(self.ws))
        self.recommender: Recommender = Recommender.load(self.cfg, self.ws)
        # Feast, MLflow and pandas leave ~400k objects behind: a full collection of them takes about
        # 0.3 s. Freezing them keeps such a pause out of the requests (objects made later are collected).
        gc.collect()
        gc.freeze()
        threading.Thread(target=self.recommender.warm_reasons, name="warm-reasons", daemon=True).start()

    # ------------------------------------------------------------------------ plumbing
    def _call(self, endpoint: str, header: str | None, params: dict[str, Any], work: Any) -> Response:
        """Authenticate the ``Authorization`` header, run ``work(principal)``, audit, and turn errors
        into answers; the answer's status is on the response."""
        principal: Principal | None = None
        token_fp = None
        rows, status = 0, 200
        try:
            if header and " " in header.strip():
                token_fp = fingerprint(header.strip().partition(" ")[2].strip())
            principal = authenticate(header, self.tokens)
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
            try:
                self.audit.record(endpoint=endpoint, status=status, principal=principal, token_fp=token_fp,
                                  params=params, rows=rows)
            except OSError:
                log.exception("audit: cannot write %s", self.audit.path)

    def answer_hints(self, customer_id: str, lang: str, header: str | None) -> Response:
        """``/hints`` for one request: what the endpoint and the fast path (:class:`_FastHints`) answer."""
        def work(p: Principal) -> tuple[HintResponse, int]:
            authorize_branch(p, self.recommender.branch_of(customer_id))
            out = self.recommender.hints(customer_id, lang)  # type: ignore[arg-type]
            return out, len(out.products)

        return self._call("/hints", header, {"customer_id": customer_id, "lang": lang}, work)

    # ------------------------------------------------------------------------ endpoints
    @bentoml.api(route="/hints")
    async def hints(self, customer_id: str, lang: str = "zh", ctx: bentoml.Context = None) -> HintResponse:  # type: ignore[assignment]
        """The customer's products, ranked by expected value, with reasons (zh by default).

        ``async`` on purpose: the work is about a millisecond of CPU (one SQLite read, one
        SHAP pass per product), less than handing it to BentoML's thread pool and back
        costs on a busy machine, so it runs on the event loop. ``/targets`` (up to a few
        hundred ms) stays in the thread pool. Well-formed requests are answered by
        :class:`_FastHints` before they reach BentoML's routing; this endpoint answers the rest
        (and defines the API's schema).
        """
        resp = self.answer_hints(customer_id, lang, ctx.request.headers.get("authorization"))
        ctx.response.status_code = resp.status_code
        return resp  # type: ignore[return-value]

    @bentoml.api(route="/targets")
    def targets(self, product: str, branch_id: str | None = None, manager_id: str | None = None,
                top: int = DEFAULT_TOP, campaign_id: str | None = None, lang: str = "zh",
                ctx: bentoml.Context = None) -> TargetResponse:  # type: ignore[assignment]
        """A ranked target list of one product, after the contact policy."""
        params = {"product": product, "branch_id": branch_id, "manager_id": manager_id, "top": top,
                  "campaign_id": campaign_id, "lang": lang}

        def work(p: Principal) -> tuple[TargetResponse, int]:
            branch = branch_scope(p, branch_id)
            if p.role == "branch" and manager_id is not None:
                authorize_branch(p, self.recommender.manager_branch(manager_id))
            df = self.recommender.target_list(product, branch, manager_id, top, campaign_id, lang)  # type: ignore[arg-type]
            rows = target_rows(df)
            return TargetResponse(product=product, campaign_id=df.attrs["campaign_id"],
                                  list_date=df.attrs["list_date"], rows=rows), len(rows)

        resp = self._call("/targets", ctx.request.headers.get("authorization"), params, work)
        ctx.response.status_code = resp.status_code
        return resp  # type: ignore[return-value]


NbpService.add_asgi_middleware(_Probes)
NbpService.add_asgi_middleware(_FastHints)

__all__ = ["SERVICE_CONFIG", "NbpService", "error_response", "model_response", "target_rows"]
