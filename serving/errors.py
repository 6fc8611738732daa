"""Errors the service answers with an HTTP status.

Our exception hierarchy (serving part)::

    NbpError (nbp.errors)
    └── ServingError         an answer to a request, with an HTTP ``status``
        ├── Unauthorized     401: missing or wrong bearer token
        ├── Forbidden        403: the token's role may not see this branch
        ├── NotFound         404: unknown customer (or nothing to show)
        ├── Unprocessable    422: a well-formed request asking for something invalid
        └── Unavailable      503: no model / feature store for the request

Each class is also a :class:`bentoml.exceptions.BentoMLException` whose
``error_code`` is the same status, so a service method can simply raise it and
BentoML 1.4 answers with that status. What BentoML then sends as the body
(read in ``_bentoml_impl/server/app.py``): 401/403 become
``{"error": "Authorization error"}`` (the message is not shown), other 4xx
become ``[{"error": message}]`` (a one-element list), 5xx hide the message.
``bentoml.exceptions`` imports only the standard library, so importing this
module is cheap.
"""

from __future__ import annotations

from http import HTTPStatus

from bentoml.exceptions import BentoMLException

from nbp.errors import FeatureStoreError, ModelUnavailable, NbpError


class _StatusAsErrorCode:
    """Gives BentoML its ``error_code`` from our ``status``.

    A property on a mixin (not a class attribute of a BentoMLException
    subclass) keeps our classes out of BentoML's global ``error_mapping``,
    which its ``__init_subclass__`` would otherwise change at import.
    """

    status: int = 500

    @property
    def error_code(self) -> HTTPStatus:
        return HTTPStatus(self.status)


class ServingError(NbpError, _StatusAsErrorCode, BentoMLException):
    """An error answered to the client with HTTP status ``status``."""

    def __init__(self, message: str) -> None:
        BentoMLException.__init__(self, message)


class Unauthorized(ServingError):
    """401: the request has no bearer token, or one nobody issued."""

    status = 401


class Forbidden(ServingError):
    """403: the token is valid but its role may not see this branch or endpoint."""

    status = 403


class NotFound(ServingError):
    """404: the customer (or list) asked for does not exist."""

    status = 404


class Unprocessable(ServingError):
    """422: the request is well formed but asks for something invalid."""

    status = 422


class Unavailable(ServingError):
    """503: the model or the feature store needed for the answer is missing."""

    status = 503


SHOWN_CHARS = 32  # how much of a client's id an error message repeats


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A client-supplied value as an error message may repeat it: at most ``limit``
    characters (then "…"), control characters replaced by "?". A message never
    reflects a long or hostile input back in full."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value)[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "…"


def to_http_error(exc: NbpError) -> ServingError:
    """Map any nbp error to the one the service should answer with.

    Args:
        exc: an error raised below the service (features, training, serving).

    Returns:
        ``exc`` itself if it is already a :class:`ServingError`; an
        :class:`Unavailable` for a missing model or feature store; otherwise a
        plain :class:`ServingError` (500). The original is chained as ``__cause__``.
    """
    if isinstance(exc, ServingError):
        return exc
    mapped: ServingError
    if isinstance(exc, (ModelUnavailable, FeatureStoreError)):
        mapped = Unavailable(str(exc))
    else:
        mapped = ServingError(str(exc))
    mapped.__cause__ = exc
    return mapped
