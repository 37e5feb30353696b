"""Optional protection of the dashboard: a bearer token, basic-auth users, or both.

    INFERSIGHT_DASHBOARD_TOKEN=s3cret            # `Authorization: Bearer s3cret`; a browser
                                                 # logs in with any user name and the token
    INFERSIGHT_DASHBOARD_USERS=alice:pw1,bob:pw2 # basic auth
    INFERSIGHT_DASHBOARD_PROJECTS=alice=shop     # alice sees only project "shop" (the
                                                 # project the collector stamps from API keys)

With neither set the dashboard is open, as it is on loopback in `infersight serve`. Put it
behind TLS (a reverse proxy) when it is reachable from other machines: basic auth sends the
password with every request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from dataclasses import dataclass, field

from flask import Flask, Response, g, has_request_context, request

TOKEN_ENV = "INFERSIGHT_DASHBOARD_TOKEN"
USERS_ENV = "INFERSIGHT_DASHBOARD_USERS"
PROJECTS_ENV = "INFERSIGHT_DASHBOARD_PROJECTS"
_PROJECT_KEY = "infersight_project"
_REALM = "Infersight"


@dataclass(frozen=True)
class Protection:
    token: str = ""
    users: dict[str, str] = field(default_factory=dict)
    projects: dict[str, str] = field(default_factory=dict)  # user -> the one project it sees

    @property
    def enabled(self) -> bool:
        return bool(self.token or self.users)

    def allows(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header value passes."""
        return self.user_for(authorization) is not None

    def user_for(self, authorization: str | None) -> str | None:
        """Who an `Authorization` header value signs in: a user name, "" for the token's
        holder, or None when it does not pass."""
        scheme, _, credentials = (authorization or "").partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self.token:
            return "" if _same(credentials.strip(), self.token) else None
        if scheme == "basic":
            try:
                user, sep, password = base64.b64decode(credentials.strip(), validate=True
                                                       ).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            if not sep:
                return None
            if self.token and _same(password, self.token):
                return ""
            # Compare even for an unknown user, so timing does not tell which users exist.
            expected = self.users.get(user)
            ok = _same(password, expected or "\0") and expected is not None
            return user if ok else None
        return None


def from_env(environ: dict[str, str] | None = None) -> Protection:
    """Protection as INFERSIGHT_DASHBOARD_TOKEN and INFERSIGHT_DASHBOARD_USERS say."""
    env = os.environ if environ is None else environ
    users = {}
    for entry in filter(None, (e.strip() for e in env.get(USERS_ENV, "").split(","))):
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"{USERS_ENV} entry {user!r} is not user:password; write "
                             f"{USERS_ENV}=alice:pw1,bob:pw2")
        users[user] = password
    projects = {}
    for entry in filter(None, (e.strip() for e in env.get(PROJECTS_ENV, "").split(","))):
        user, sep, project = entry.partition("=")
        if not sep or user not in users or not project:
            raise ValueError(f"{PROJECTS_ENV} entry {entry!r} must be user=project for a user "
                             f"of {USERS_ENV}; write {PROJECTS_ENV}=alice=shop")
        projects[user] = project
    return Protection(token=env.get(TOKEN_ENV, "").strip(), users=users, projects=projects)


def protect(server: Flask, protection: Protection) -> None:
    """Refuse every request to `server` (pages, callbacks, assets) that `protection` does not
    allow; nothing to do when it is not enabled."""
    if not protection.enabled:
        return

    @server.before_request
    def _check():
        user = protection.user_for(request.headers.get("Authorization"))
        if user is not None:
            setattr(g, _PROJECT_KEY, protection.projects.get(user))
            return None
        return Response("Infersight dashboard: log in with a user of "
                        f"{USERS_ENV} or the token of {TOKEN_ENV}.\n", 401,
                        {"WWW-Authenticate": f'Basic realm="{_REALM}", charset="UTF-8"'})


def current_project() -> str | None:
    """The one project the signed-in user may see, while serving a request; None means every
    project (no protection, the token's holder, or a user bound to no project)."""
    return g.get(_PROJECT_KEY) if has_request_context() else None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
