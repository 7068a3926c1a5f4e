"""Who may see and change what: credentials, signed session cookies, CSRF tokens, headers.

Secure by default: with no credentials and no ``read_only_anonymous`` every
request is refused (401). A visitor signs in with a form (a session cookie,
signed with a key made when the dashboard starts) or sends HTTP Basic
credentials (scripts, Prometheus). Writes are POSTs carrying a CSRF token
derived from the session; anonymous readers never write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

from pigeon.errors import ConfigurationError

SESSION_COOKIE = "pigeon_session"
SESSION_SECONDS = 12 * 3600
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def parse_credentials(text: str) -> tuple[str, str]:
    """``user:password`` → ``(user, password)``.

    Raises:
        ConfigurationError: no colon, or an empty user or password.
    """
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ConfigurationError("dashboard auth: write user:password (both non-empty)")
    return user, password


@dataclass
class Guard:
    """The dashboard's access rules and the key its cookies and tokens are signed with."""

    credentials: tuple[str, str] | None = None
    read_only_anonymous: bool = False
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    external: bool = False
    """The host framework authenticates: it puts ``pigeon.user`` (None for nobody) and
    ``pigeon.can_write`` in the ASGI scope (see ``pigeon.contrib.django.urls``)."""

    @property
    def closed(self) -> bool:
        """Nothing configured: every request is refused."""
        return self.credentials is None and not self.read_only_anonymous and not self.external

    def check_password(self, user: str, password: str) -> bool:
        if self.credentials is None:
            return False
        want_user, want_password = self.credentials
        # Both compared, in constant time, so timing tells nothing about which was wrong.
        ok_user = hmac.compare_digest(user.encode(), want_user.encode())
        ok_password = hmac.compare_digest(password.encode(), want_password.encode())
        return ok_user and ok_password

    def basic_user(self, header: str | None) -> str | None:
        """The user of a valid ``Authorization: Basic …`` header."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user if self.check_password(user, password) else None

    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def session_for(self, user: str) -> str:
        expires = int(time.time()) + SESSION_SECONDS
        body = f"{base64.urlsafe_b64encode(user.encode()).decode()}.{expires}"
        return f"{body}.{self._sign(body)}"

    def session_user(self, cookie: str | None) -> str | None:
        """The user of a valid, unexpired session cookie."""
        if not cookie or self.credentials is None:
            return None
        body, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        encoded, _, expires = body.partition(".")
        if not expires.isdigit() or int(expires) < time.time():
            return None
        user = base64.urlsafe_b64decode(encoded.encode()).decode()
        return user if user == self.credentials[0] else None

    def csrf_token(self, user: str) -> str:
        return self._sign(f"csrf:{user}")

    def csrf_ok(self, user: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(user))


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def check_bind(host: str, guard: Guard) -> None:
    """Refuse to serve beyond this machine without credentials.

    Raises:
        ConfigurationError: a non-loopback address and no ``--auth``.
    """
    if host not in LOOPBACK and not host.startswith("127.") and guard.credentials is None:
        raise ConfigurationError(
            f"refusing to serve the dashboard on {host} without credentials: "
            "give --auth user:password (or PIGEON_DASHBOARD_AUTH), or bind to 127.0.0.1"
        )
