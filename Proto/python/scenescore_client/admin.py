"""Client for the scene admin API (Proto/ADMIN.md): register scenes, push head versions, move
labels, roll back, remove — over HTTP/2 + TLS with a bearer token and/or a client certificate.

Every method returns the decoded JSON document of a 2xx answer and raises
:class:`~scenescore_client.client.ProblemError` (``status``, ``detail``, ``problem``) otherwise.
:meth:`AdminClient.request` gives the raw :class:`httpx.Response` for callers that check
statuses themselves (the tests). :class:`AsyncAdminClient` has the same methods as coroutines,
for many writes in flight on one HTTP/2 connection.
"""

from __future__ import annotations

import json
import os
import ssl
from typing import Any, Mapping
from urllib.parse import quote

import httpx

from .client import ProblemError, ProtocolError, ScoreClient, _ssl_verify

__all__ = ["AdminClient", "AsyncAdminClient", "ProblemError", "read_token", "scene_path"]

ADMIN_PREFIX = "/admin/v1"
HEAD_CONTENT_TYPE = "application/octet-stream"
PLUGIN_CONFIG_HEADER = "x-scenescore-plugin-config"
LABELS = ("stable", "canary", "none")

_UNSET: Any = object()  # "leave this label as it is" (None means "clear the canary")


def read_token(path: str | os.PathLike[str]) -> str:
    """A bearer token from a file (surrounding whitespace, e.g. a final newline, removed)."""
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def scene_path(scene: str, *rest: str) -> str:
    return "/".join([ADMIN_PREFIX, "scenes", quote(scene, safe="")] + [quote(part, safe="") for part in rest])


def _params(**values: Any) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = repr(float(value)) if isinstance(value, float) else str(value)
    return out


class _Requests:
    """What a request is, independent of sync or async sending: (method, path, params, headers, body)."""

    def __init__(self, token: str | None):
        self.token = token

    def headers(self, *, content_type: str | None = None, if_match: int | str | None = None,
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"accept": "application/json, application/problem+json"}
        if self.token is not None:
            headers["authorization"] = f"Bearer {self.token}"
        if content_type is not None:
            headers["content-type"] = content_type
        if if_match is not None:
            headers["if-match"] = str(if_match)
        headers.update(extra or {})
        return headers

    def register(self, scene, head, plugin, plugin_config, if_match):
        extra = {}
        if plugin_config is not None:
            extra[PLUGIN_CONFIG_HEADER] = plugin_config if isinstance(plugin_config, str) else \
                json.dumps(plugin_config, separators=(",", ":"))
        return ("PUT", scene_path(scene), _params(plugin=plugin),
                self.headers(content_type=HEAD_CONTENT_TYPE, if_match=if_match, extra=extra), bytes(head))

    def push(self, scene, head, label, share, plugin, if_match):
        if label is not None and label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {label!r}")
        return ("POST", scene_path(scene, "versions"), _params(label=label, share=share, plugin=plugin),
                self.headers(content_type=HEAD_CONTENT_TYPE, if_match=if_match), bytes(head))

    def labels(self, scene, stable, canary, canary_share, if_match):
        doc: dict[str, Any] = {}
        if stable is not _UNSET:
            doc["stable"] = stable
        if canary is not _UNSET:
            doc["canary"] = canary
        if canary_share is not _UNSET:
            doc["canary_share"] = canary_share
        return ("PUT", scene_path(scene, "labels"), {},
                self.headers(content_type="application/json", if_match=if_match), json.dumps(doc).encode())

    def rollback(self, scene, version, if_match):
        body = json.dumps({"version": version}).encode() if version is not None else b""
        return ("POST", scene_path(scene, "rollback"), {},
                self.headers(content_type="application/json" if body else None, if_match=if_match), body)

    def remove(self, scene, if_match):
        return ("DELETE", scene_path(scene), {}, self.headers(if_match=if_match), None)

    def get(self, path):
        return ("GET", path, {}, self.headers(), None)


def _document(response: httpx.Response, require_http2: bool) -> Any:
    if require_http2 and response.http_version != "HTTP/2":
        raise ProtocolError(f"admin server answered over {response.http_version}; it requires HTTP/2")
    if not 200 <= response.status_code < 300:
        raise ScoreClient._problem(response)  # noqa: SLF001 - the one problem parser
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(f"admin answer {response.status_code} is not JSON: {response.text[:200]!r}") from None


def _http_args(base_url: str, verify, cert, timeout: float, http2: bool) -> dict[str, Any]:
    context = _ssl_verify(verify)
    if cert is not None:
        if not isinstance(context, ssl.SSLContext):
            context = ssl.create_default_context() if context else ssl._create_unverified_context()  # noqa: SLF001
        cert_file, key_file = cert if isinstance(cert, tuple) else (cert, None)
        context.load_cert_chain(os.fspath(cert_file), None if key_file is None else os.fspath(key_file))
    cleartext = httpx.URL(base_url).scheme == "http"
    return dict(base_url=base_url, verify=context, http1=not (http2 and cleartext), http2=http2, timeout=timeout)


class AdminClient:
    """Synchronous admin client. ``token``: the bearer token (None: send none); ``verify``: a CA
    path, True, False or an SSLContext; ``cert``: a client certificate (path, or (cert, key))."""

    def __init__(self, base_url: str, token: str | None = None, *,
                 verify: str | os.PathLike[str] | bool | ssl.SSLContext = True,
                 cert: str | os.PathLike[str] | tuple[Any, Any] | None = None,
                 timeout: float = 60.0, http2: bool = True, transport: httpx.BaseTransport | None = None):
        self._build = _Requests(token)
        self._require_http2 = http2
        self._http = httpx.Client(transport=transport, **_http_args(base_url, verify, cert, timeout, http2))

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                headers: Mapping[str, str] | None = None, content: bytes | None = None,
                token: str | None | Any = _UNSET) -> httpx.Response:
        """Any request, answered raw. ``token`` overrides the client's (None: no authorization)."""
        builder = self._build if token is _UNSET else _Requests(token)
        merged = builder.headers()
        merged.update(headers or {})
        return self._http.request(method, path, params=params, headers=merged, content=content)

    def _send(self, spec) -> Any:
        method, path, params, headers, body = spec
        return _document(self._http.request(method, path, params=params, headers=headers, content=body),
                         self._require_http2)

    def scenes(self) -> list[dict[str, Any]]:
        """``GET /admin/v1/scenes``: every scene (generation, plugin, labels, kept versions)."""
        return self._send(self._build.get(f"{ADMIN_PREFIX}/scenes"))["scenes"]

    def scene(self, scene: str) -> dict[str, Any]:
        return self._send(self._build.get(scene_path(scene)))

    def versions(self, scene: str) -> dict[str, Any]:
        return self._send(self._build.get(scene_path(scene, "versions")))

    def register(self, scene: str, head: bytes, *, plugin: str | None = None,
                 plugin_config: Mapping[str, Any] | str | None = None, if_match: int | None = None) -> dict:
        return self._send(self._build.register(scene, head, plugin, plugin_config, if_match))

    def push(self, scene: str, head: bytes, *, label: str | None = None, share: float | None = None,
             plugin: str | None = None, if_match: int | None = None) -> dict:
        return self._send(self._build.push(scene, head, label, share, plugin, if_match))

    def set_labels(self, scene: str, *, stable: str = _UNSET, canary: str | None = _UNSET,
                   canary_share: float = _UNSET, if_match: int | None = None) -> dict:
        return self._send(self._build.labels(scene, stable, canary, canary_share, if_match))

    def rollback(self, scene: str, version: str | None = None, *, if_match: int | None = None) -> dict:
        return self._send(self._build.rollback(scene, version, if_match))

    def remove(self, scene: str, *, if_match: int | None = None) -> dict:
        return self._send(self._build.remove(scene, if_match))


class AsyncAdminClient:
    """:class:`AdminClient` as coroutines: many writes in flight as streams of one HTTP/2 connection."""

    def __init__(self, base_url: str, token: str | None = None, *,
                 verify: str | os.PathLike[str] | bool | ssl.SSLContext = True,
                 cert: str | os.PathLike[str] | tuple[Any, Any] | None = None,
                 timeout: float = 120.0, http2: bool = True, max_connections: int = 1):
        self._build = _Requests(token)
        self._require_http2 = http2
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(limits=limits, **_http_args(base_url, verify, cert, timeout, http2))

    async def __aenter__(self) -> "AsyncAdminClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    async def _send(self, spec) -> Any:
        method, path, params, headers, body = spec
        response = await self._http.request(method, path, params=params, headers=headers, content=body)
        return _document(response, self._require_http2)

    async def scenes(self) -> list[dict[str, Any]]:
        return (await self._send(self._build.get(f"{ADMIN_PREFIX}/scenes")))["scenes"]

    async def scene(self, scene: str) -> dict[str, Any]:
        return await self._send(self._build.get(scene_path(scene)))

    async def register(self, scene: str, head: bytes, *, plugin: str | None = None,
                       plugin_config: Mapping[str, Any] | str | None = None, if_match: int | None = None) -> dict:
        return await self._send(self._build.register(scene, head, plugin, plugin_config, if_match))

    async def push(self, scene: str, head: bytes, *, label: str | None = None, share: float | None = None,
                   plugin: str | None = None, if_match: int | None = None) -> dict:
        return await self._send(self._build.push(scene, head, label, share, plugin, if_match))

    async def set_labels(self, scene: str, *, stable: str = _UNSET, canary: str | None = _UNSET,
                         canary_share: float = _UNSET, if_match: int | None = None) -> dict:
        return await self._send(self._build.labels(scene, stable, canary, canary_share, if_match))

    async def remove(self, scene: str, *, if_match: int | None = None) -> dict:
        return await self._send(self._build.remove(scene, if_match))
