"""API keys: each key maps to a project, and every span sent with it is stamped with that project.

The keys file has one `key = project` per line; blank lines and `#` comments are ignored:

    # infersight API keys
    sk-checkout-3f9a = checkout
    sk-search-81c2   = search

Clients send the key as `Authorization: Bearer <key>` (an HTTP header, or gRPC metadata
`authorization`). Without a keys file (embedded mode) nothing is checked or stamped. Keys are
held as SHA-256 digests, so a lookup neither keeps the keys in memory nor takes a time that
depends on how much of a key matched.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc

ENV_KEYS_FILE = "INFERSIGHT_API_KEYS_FILE"
PROJECT_ATTRIBUTE = "infersight.project.id"  # resource attribute; the ProjectId column reads it


class Unauthenticated(Exception):
    """A request without a valid API key; the message says what to send."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    def __init__(self, projects: dict[str, str]):
        self._projects = {_digest(key): project for key, project in projects.items()}

    @classmethod
    def load(cls, path: str | Path) -> "ApiKeys":
        """Read a keys file; a malformed line is an error naming the file and line."""
        projects: dict[str, str] = {}
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, sep, project = (part.strip() for part in line.partition("="))
            if not sep or not key or not project:
                raise ValueError(f"{path}:{number}: expected `key = project`, got {line!r}")
            projects[key] = project
        if not projects:
            raise ValueError(f"{path}: no API keys; add lines of `key = project`")
        return cls(projects)

    def __len__(self) -> int:
        return len(self._projects)

    def project_for(self, authorization: str | None) -> str:
        """The project of the key in an `Authorization` value, or `Unauthenticated`."""
        if not authorization:
            raise Unauthenticated("missing API key: send `Authorization: Bearer <key>` "
                                  "(gRPC metadata `authorization`)")
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("malformed Authorization: expected `Bearer <key>`")
        project = self._projects.get(_digest(key.strip()))
        if project is None:
            raise Unauthenticated("unknown API key: check the key configured in the exporter "
                                  "against the collector's keys file")
        return project


def grpc_project(api_keys: ApiKeys | None, context: grpc.ServicerContext) -> str | None:
    """The project of a gRPC call's API key (None when keys are off); a call without a valid
    key is aborted with UNAUTHENTICATED and a message saying what to send."""
    if api_keys is None:
        return None
    authorization = next((v for k, v in context.invocation_metadata() if k == "authorization"),
                         None)
    try:
        return api_keys.project_for(authorization)
    except Unauthenticated as exc:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
