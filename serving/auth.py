"""Bearer tokens, roles, bank and branch scope.

Tokens are never in the repository. They come from the environment variable
``NBP_TOKENS`` or, when it is unset, from the file named by
``serving.tokens_file``. Both use one entry per token::

    TOKEN:ROLE[:BANK[:BRANCH]]

comma-separated in ``NBP_TOKENS``; one per line in the file, where ``#`` starts
a comment. How the fields after the role are read depends on the workspace
(:class:`Tenancy`):

- a single-bank workspace: ``TOKEN:ROLE[:BRANCH_ID]`` as always; a four-field entry
  ``TOKEN:ROLE:BANK:BRANCH`` (``BRANCH`` empty for the roles without one) is accepted
  only when ``BANK`` is the bank the workspace's ingest recorded;
- a federation workspace: every token but ``federation_admin`` names its member bank,
  ``TOKEN:ROLE:BANK`` or ``TOKEN:branch:BANK:BRANCH``.

Roles:

``marketing``         every branch of its bank (no branch)
``branch``            its own branch only (``BRANCH`` required): 403 elsewhere
``admin``             everything of its bank, including the admin views (no branch)
``federation_admin``  every member bank, read only: names the bank of each request
                      (federation workspaces only)

A token is compared in constant time, and only its fingerprint (a truncated
HMAC-SHA256 keyed with the workspace's secret, :func:`fingerprint` and
:func:`fingerprint_key`) is ever logged or audited: without the key, a fingerprint
cannot be matched against guessed tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nbp.config import Config
from nbp.errors import ConfigError
from nbp.workspace import CHECKOUT, Workspace, is_bank_code
from serving.errors import Forbidden, NotFound, Unauthorized, Unprocessable, shown

log = logging.getLogger(__name__)

ENV_VAR = "NBP_TOKENS"
KEY_ENV_VAR = "NBP_FINGERPRINT_KEY"  # the fingerprint key itself (hex); else the workspace's key file
MIN_KEY_BYTES = 16
ROLES = ("marketing", "branch", "admin", "federation_admin")
FEDERATION_ADMIN = "federation_admin"  # every member bank, read only; no bank of its own
MIN_TOKEN_LENGTH = 16  # shorter tokens are accepted with a warning
_FORBIDDEN_CHARS = set(":,# \t")


@dataclass(frozen=True)
class Principal:
    """Who a valid token belongs to.

    Attributes:
        role: one of :data:`ROLES`.
        branch_id: the branch of a ``branch`` token; None for the other roles.
        fingerprint: short non-reversible id of the token, safe to log.
        bank: the member bank the token is limited to; None for ``federation_admin`` and
            for a single-bank workspace's token that names no bank.
    """

    role: str
    branch_id: str | None
    fingerprint: str
    bank: str | None = None

    def may_see_branch(self, branch_id: str | None) -> bool:
        """Whether this principal may see ``branch_id`` (None: all branches)."""
        if self.role != "branch":
            return True
        return branch_id is not None and branch_id == self.branch_id


@dataclass(frozen=True)
class Tenancy:
    """The banks a workspace serves, which decides how a token entry is read.

    Attributes:
        federation: a federation workspace (member banks under ``banks/``, no single-bank store).
        banks: the member banks of a federation; of a single-bank workspace, the bank code its
            ingest recorded, or nothing.
    """

    federation: bool = False
    banks: tuple[str, ...] = ()

    @classmethod
    def of(cls, ws: Workspace) -> Tenancy:
        """The workspace's tenancy: a federation when it holds member banks and no single-bank store."""
        members = ws.banks()
        if members and not ws.ingest_meta.exists():
            return cls(True, tuple(members))
        own = ws.recorded_bank()
        return cls(False, (own,) if own else ())

    def __str__(self) -> str:
        return ", ".join(self.banks) or "(no bank code recorded)"


def fingerprint(token: str, key: bytes) -> str:
    """A short, non-reversible id of a token: 12 hex digits of HMAC-SHA256(key, token).

    Keyed, so a fingerprint in a log or the audit trail cannot be checked against
    guessed or leaked tokens by someone without the key (a bare hash could).
    """
    return hmac.new(key, token.encode("utf-8"), hashlib.sha256).hexdigest()[:12]


def fingerprint_key(ws: Workspace, environ: Mapping[str, str]) -> bytes:
    """The server's secret key of token fingerprints.

    ``NBP_FINGERPRINT_KEY`` (hex, at least 16 bytes) if set; else the workspace's key
    file (``Workspace.fingerprint_key``), created on first use with 32 random bytes, mode 600, in a
    folder of mode 700. The same key must serve every worker and restart, so that a
    token keeps its fingerprint in the audit trail.

    Raises:
        ConfigError: the variable or the file does not hold at least 16 bytes of hex.
    """
    text = environ.get(KEY_ENV_VAR, "").strip()
    source = KEY_ENV_VAR
    if not text:
        path = ws.fingerprint_key
        source = str(path)
        if not path.exists():
            _create_key(path)
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s: readable by others; chmod 600 it", path)
        text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{source}: the token fingerprint key must be at least {MIN_KEY_BYTES} bytes of hex "
            f"(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    return key


def _create_key(path: Path) -> None:
    """Write a new random key at ``path``, atomically: two workers starting at once keep the first."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process made the key first: keep that one
        log.info("token fingerprint key created at %s", path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _entries(text: str) -> list[str]:
    out: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        out.extend(part.strip() for part in line.split(","))
    return [e for e in out if e]


def parse_tokens(
    text: str, source: str = ENV_VAR, *, key: bytes, tenancy: Tenancy | None = None
) -> dict[str, Principal]:
    """Parse token entries ``TOKEN:ROLE[:BANK[:BRANCH]]`` (module docstring).

    Entries are separated by commas or new lines; ``#`` starts a comment.

    Args:
        text: the entries.
        source: where they came from, named in error messages.
        key: the fingerprint key (:func:`fingerprint_key`).
        tenancy: the workspace's banks (:meth:`Tenancy.of`); default a single bank with no
            recorded code.

    Returns:
        Token -> :class:`Principal`.

    Raises:
        ConfigError: an entry is malformed, has an unknown role, a ``branch`` entry lacks
            its branch, another role names one, a bank is missing, invalid or not served by
            this workspace, or a token repeats. The message names the entry by position and
            fingerprint, never the token itself.
    """
    tenancy = tenancy or Tenancy()
    tokens: dict[str, Principal] = {}
    for i, entry in enumerate(_entries(text), start=1):
        parts = [p.strip() for p in entry.split(":")]
        token = parts[0]
        where = f"{source} entry {i} (token fingerprint {fingerprint(token, key)})"
        if len(parts) not in (2, 3, 4) or not token or not parts[1]:
            raise ConfigError(f"{where}: expected TOKEN:ROLE[:BANK[:BRANCH]], got {len(parts)} field(s)")
        if _FORBIDDEN_CHARS & set(token):
            raise ConfigError(f"{where}: a token may not contain spaces, ':', ',' or '#'")
        role = parts[1].lower()
        if role not in ROLES:
            raise ConfigError(f"{where}: unknown role '{parts[1]}' (roles: {', '.join(ROLES)})")
        bank, branch = _scope(parts, role, tenancy, where)
        if role == "branch" and branch is None:
            form = "TOKEN:branch:BANK:BRANCH" if tenancy.federation else "TOKEN:branch:BRANCH_ID"
            raise ConfigError(f"{where}: role 'branch' needs a branch, as {form}")
        if role != "branch" and branch is not None:
            raise ConfigError(f"{where}: role '{role}' covers every branch; remove ':{branch}'")
        if token in tokens:
            raise ConfigError(f"{where}: the same token is listed twice")
        if len(token) < MIN_TOKEN_LENGTH:
            log.warning("%s: token shorter than %d characters; use a long random one", where, MIN_TOKEN_LENGTH)
        tokens[token] = Principal(role=role, branch_id=branch, fingerprint=fingerprint(token, key), bank=bank)
    return tokens


def _scope(parts: list[str], role: str, tenancy: Tenancy, where: str) -> tuple[str | None, str | None]:
    """The (bank, branch) an entry's fields after the role name, as the workspace reads them.

    Raises:
        ConfigError: a bank is missing (federation), not a valid code, or not one this workspace serves.
    """
    rest = [p or None for p in parts[2:]]
    if role == FEDERATION_ADMIN:
        if not tenancy.federation:
            raise ConfigError(f"{where}: role '{FEDERATION_ADMIN}' needs a federation workspace; use 'admin' here")
        if any(rest):
            raise ConfigError(f"{where}: role '{FEDERATION_ADMIN}' covers every bank; write TOKEN:{FEDERATION_ADMIN}")
        return None, None
    if not tenancy.federation and len(parts) < 4:
        return None, rest[0] if rest else None  # TOKEN:ROLE[:BRANCH_ID], as in every single-bank workspace
    bank = rest[0] if rest else None
    if bank is None:
        raise ConfigError(
            f"{where}: this is a federation workspace: a '{role}' token names its bank, as "
            f"TOKEN:{role}:BANK{':BRANCH' if role == 'branch' else ''} (banks: {tenancy})"
        )
    if not is_bank_code(bank):
        raise ConfigError(f"{where}: '{shown(bank, 20)}' is not a bank code (1-16 of A-Z a-z 0-9 _ -)")
    if bank not in tenancy.banks:
        what = "member banks" if tenancy.federation else "this single-bank workspace holds"
        raise ConfigError(f"{where}: bank '{bank}' is not served here ({what}: {tenancy})")
    return bank, rest[1] if len(rest) > 1 else None


def load_tokens(
    cfg: Config, environ: Mapping[str, str], *, key: bytes, tenancy: Tenancy | None = None
) -> dict[str, Principal]:
    """Load the service's tokens: ``NBP_TOKENS`` if set, else ``serving.tokens_file``.

    Args:
        cfg: the configuration (``cfg.serving.tokens_file``).
        environ: the environment, e.g. ``os.environ``.
        key: the fingerprint key (:func:`fingerprint_key`).
        tenancy: the workspace's banks (:meth:`Tenancy.of`), which decide how entries are read.

    Returns:
        Token -> :class:`Principal`, never empty.

    Raises:
        ConfigError: no source is set, the file is missing or lies inside the
            checkout (secrets stay out of the repository), or an entry is bad.
    """
    text = environ.get(ENV_VAR, "").strip()
    if text:
        tokens = parse_tokens(text, ENV_VAR, key=key, tenancy=tenancy)
    elif cfg.serving.tokens_file:
        path = Path(os.path.expandvars(cfg.serving.tokens_file)).expanduser().resolve()
        if path.is_relative_to(CHECKOUT):
            raise ConfigError(
                f"serving.tokens_file {path}: lies inside the checkout {CHECKOUT}; keep tokens outside the repository"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"serving.tokens_file {path}: cannot read: {e.strerror}") from e
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("serving.tokens_file %s: readable by others; chmod 600 it", path)
        tokens = parse_tokens(text, str(path), key=key, tenancy=tenancy)
    else:
        raise ConfigError(f"no API tokens: set {ENV_VAR}=TOKEN:ROLE[:BANK[:BRANCH]],... or serving.tokens_file")
    if not tokens:
        raise ConfigError(f"no API tokens: {ENV_VAR} or serving.tokens_file lists no entry")
    by_role = {r: sum(p.role == r for p in tokens.values()) for r in ROLES}
    log.info("tokens: %d loaded (%s)", len(tokens), ", ".join(f"{r} {n}" for r, n in by_role.items()))
    return tokens


def presented_fingerprint(header_value: str | None, key: bytes) -> str | None:
    """The fingerprint of the token an ``Authorization`` header presents (None: no token)."""
    if not header_value or " " not in header_value.strip():
        return None
    return fingerprint(header_value.strip().partition(" ")[2].strip(), key)


def authenticate(header_value: str | None, tokens: Mapping[str, Principal], key: bytes) -> Principal:
    """Check an ``Authorization`` header.

    Args:
        header_value: the header, ``"Bearer <token>"`` (scheme case-insensitive).
        tokens: from :func:`load_tokens`.
        key: the fingerprint key, for the message about an unknown token.

    Returns:
        The token's :class:`Principal`.

    Raises:
        Unauthorized: the header is missing, not a bearer token, or the token
            is unknown. Every known token is compared, in constant time.
    """
    if not header_value:
        raise Unauthorized("missing Authorization header (expected 'Bearer <token>')")
    scheme, _, presented = header_value.strip().partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise Unauthorized("Authorization header is not 'Bearer <token>'")
    given = presented.encode("utf-8")
    found: Principal | None = None
    for token, principal in tokens.items():
        if hmac.compare_digest(given, token.encode("utf-8")):
            found = principal
    if found is None:
        raise Unauthorized(f"unknown token (fingerprint {fingerprint(presented, key)})")
    return found


def authorize_branch(principal: Principal, branch_id: str | None) -> None:
    """Allow a request about ``branch_id`` (None: all branches) or refuse it.

    Raises:
        Forbidden: a ``branch`` token asked about another branch, or about all. The
            message names the token's own branch only: a refusal never tells which
            branch a customer or manager belongs to.
    """
    if not principal.may_see_branch(branch_id):
        raise Forbidden(f"this token sees only its own branch '{principal.branch_id}'")


def bank_scope(principal: Principal, bank: str | None, banks: tuple[str, ...]) -> str:
    """The member bank a request of a federation workspace is about.

    A bank's token gets its own bank (naming another is 403, with only its own bank in the
    message); ``federation_admin`` must name one of ``banks``.

    Raises:
        Forbidden: a bank's token named another bank.
        Unprocessable: ``federation_admin`` named no bank.
        NotFound: ``federation_admin`` named a bank that is not a member.
    """
    if principal.role != FEDERATION_ADMIN:
        if bank is not None and bank != principal.bank:
            raise Forbidden(f"this token sees only its own bank '{principal.bank}'")
        assert principal.bank is not None, "a federation token without a bank passed parse_tokens"
        return principal.bank
    if bank is None:
        raise Unprocessable(f"a {FEDERATION_ADMIN} token names the bank: add bank_code (banks: {', '.join(banks)})")
    if bank not in banks:
        raise NotFound(f"bank '{shown(bank)}' is not a member bank here (banks: {', '.join(banks)})")
    return bank


def authorize_role(principal: Principal, *roles: str) -> None:
    """Allow only the given roles (e.g. ``authorize_role(p, "admin")``).

    Raises:
        Forbidden: the principal's role is not among ``roles``.
    """
    if principal.role not in roles:
        raise Forbidden(f"role '{principal.role}' may not do this (needs {' or '.join(roles)})")


def branch_scope(principal: Principal, branch_id: str | None) -> str | None:
    """The branch a list request really covers.

    A ``branch`` token that names no branch gets its own; any other request is
    checked with :func:`authorize_branch` and returned unchanged.
    """
    if principal.role == "branch" and branch_id is None:
        return principal.branch_id
    authorize_branch(principal, branch_id)
    return branch_id
