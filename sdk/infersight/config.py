"""Settings for `instrument()`: explicit arguments first, then INFERSIGHT_* / OTEL_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_ENDPOINT = "http://localhost:4317"


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    service_name: str
    endpoint: str
    headers: dict[str, str]
    capture_content: bool
    enabled: bool
    max_queue_size: int
    # True when the caller named an endpoint: then spans go there even on the app's own provider.
    endpoint_given: bool


def _parse_headers(raw: str) -> dict[str, str]:
    headers = {}
    for part in raw.split(","):
        if "=" in part:
            key, _, value = part.partition("=")
            headers[key.strip().lower()] = value.strip()
    return headers


def load(service_name: str | None = None, endpoint: str | None = None,
         api_key: str | None = None, capture_content: bool | None = None,
         max_queue_size: int | None = None) -> Settings:
    env = os.environ
    endpoint_given = bool(endpoint or env.get("INFERSIGHT_ENDPOINT"))
    endpoint = (endpoint or env.get("INFERSIGHT_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT)
    headers = _parse_headers(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
    api_key = api_key or env.get("INFERSIGHT_API_KEY")
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    if capture_content is None:
        capture_content = _env_bool("INFERSIGHT_CAPTURE_CONTENT", False)
    if max_queue_size is None:
        max_queue_size = _env_int("INFERSIGHT_MAX_QUEUE_SIZE", 16384)
    return Settings(
        service_name=service_name or env.get("OTEL_SERVICE_NAME") or "unknown_service",
        endpoint=endpoint,
        headers=headers,
        capture_content=bool(capture_content),
        enabled=not _env_bool("INFERSIGHT_DISABLED", False),
        max_queue_size=max_queue_size,
        endpoint_given=endpoint_given,
    )
