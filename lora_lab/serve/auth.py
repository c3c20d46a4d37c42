"""Who may change what the server serves, and what a client may be told.

- Management (`PUT`/`DELETE /v1/adapters/...`) is off unless `management=true`. Then it takes a
  bearer token, `LORA_LAB_ADMIN_TOKEN` or the file `admin_token_file` names: never a command-line
  value, which `ps` and shell histories show. Tokens are compared in constant time
  (`hmac.compare_digest`), so the time to refuse says nothing of how much of a guess was right.
- `PUT` loads only from under `adapter_roots`; the path is resolved first (symlinks, `..`), so a
  link inside a root that points outside it is refused like the outside path itself.
- Prediction routes take `api_tokens` (`LORA_LAB_API_TOKENS`, comma-separated, or
  `api_tokens_file`, one per line) when set; off by default.
- A server bound beyond loopback with management on and no admin token does not start.

Failures answer 401 (no or wrong token; `WWW-Authenticate: Bearer`) or 403 (management off, no
token configured, a path outside the roots), with no server path in the body.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from fastapi import HTTPException, Request

from lora_lab.errors import ConfigError

ADMIN_TOKEN_ENV = "LORA_LAB_ADMIN_TOKEN"
API_TOKENS_ENV = "LORA_LAB_API_TOKENS"
MIN_TOKEN_CHARS = 16  # a token shorter than this is a password someone typed, not a secret
ENABLE_HINT = (
    f"start the server with management=true and an admin token in {ADMIN_TOKEN_ENV} "
    "(or admin_token_file=<file holding it>), then send `Authorization: Bearer <token>`"
)


def read_admin_token(token_file: str | None) -> str | None:
    """The admin token from the environment, else from token_file; None when neither is set."""
    token = os.environ.get(ADMIN_TOKEN_ENV) or (_read_file(token_file, "admin_token_file") if token_file else None)
    if token is not None:
        token = token.strip()
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"the admin token ({ADMIN_TOKEN_ENV} or admin_token_file) has {len(token)} characters; use at least "
                f"{MIN_TOKEN_CHARS} random ones, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
    return token


def read_api_tokens(tokens_file: str | None) -> list[str]:
    """The prediction routes' tokens: LORA_LAB_API_TOKENS (comma-separated), else one per line of tokens_file."""
    raw = os.environ.get(API_TOKENS_ENV)
    tokens = raw.split(",") if raw else (_read_file(tokens_file, "api_tokens_file").splitlines() if tokens_file else [])
    return [t.strip() for t in tokens if t.strip()]


def _read_file(path: str, key: str) -> str:
    try:
        return Path(path).expanduser().read_text()
    except OSError as err:
        raise ConfigError(f"{key}={path}: cannot read it ({err.strerror}); name a file holding the token") from err


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`; everything else (0.0.0.0 included) reaches beyond this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it resolves to who knows what


def check_exposure(host: str, management: bool, admin_token: str | None) -> None:
    """Refuse to start an exposed server whose models anyone could replace."""
    if management and admin_token is None and not is_loopback(host):
        raise ConfigError(
            f"host={host} with management=true and no admin token: anyone who reaches the port could load or "
            f"remove models. Set {ADMIN_TOKEN_ENV} (or admin_token_file=<file>), or management=false, or bind "
            "to 127.0.0.1"
        )


def bearer(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def matches(given: str | None, tokens: list[str]) -> bool:
    """Constant-time comparison against every token (no early exit on the first match)."""
    found = False
    for token in tokens:
        found |= given is not None and hmac.compare_digest(given.encode(), token.encode())
    return found


def unauthorized(what: str) -> HTTPException:
    return HTTPException(401, f"{what}: send `Authorization: Bearer <token>`", headers={"WWW-Authenticate": "Bearer"})


def check_admin(request: Request, management: bool, admin_token: str | None) -> None:
    if not management:
        raise HTTPException(403, f"model management is off on this server: to enable it, {ENABLE_HINT}")
    if admin_token is None:
        raise HTTPException(403, f"model management has no admin token configured: to enable it, {ENABLE_HINT}")
    if not matches(bearer(request), [admin_token]):
        raise unauthorized("model management needs the server's admin token")


def check_api(request: Request, api_tokens: list[str]) -> None:
    if api_tokens and not matches(bearer(request), api_tokens):
        raise unauthorized("this server's prediction routes need an API token")


def allowed_path(path: str, roots: list[str]) -> Path:
    """path resolved (symlinks, `..`), if it lies under one of roots (resolved too); else 403."""
    if not roots:
        raise HTTPException(403, "no adapter_roots configured: start the server with adapter_roots=[<dir>, ...]")
    resolved = Path(path).expanduser().resolve()
    if not any(resolved.is_relative_to(Path(root).expanduser().resolve()) for root in roots):
        raise HTTPException(403, "that path is outside the server's adapter_roots")
    return resolved
