"""HTTP/2 client for a SceneScore server (endpoints and semantics: Proto/WIRE.md)."""

from __future__ import annotations

import json
import os
import secrets
import ssl
from typing import Any
from urllib.parse import unquote

import httpx

from .scenes import SceneDescription
from .wire import (
    CONTENT_TYPE,
    HEAD_VERSION_HEADER,
    JSON_CONTENT_TYPE,
    PROBLEM_CONTENT_TYPE,
    ScoreResponse,
    WireError,
    decode_response,
    encode_request,
    request_to_json,
    response_from_json,
)

SCORE_PATH = "/v1/score"
SCENES_PATH = "/v1/scenes"
HEALTH_PATH = "/readyz"


class ClientError(Exception):
    """Base class for errors raised by :class:`ScoreClient`."""


class ProblemError(ClientError):
    """The server answered with an error status (normally an RFC 9457 problem document)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type: str = "about:blank",
        title: str = "",
        problem: dict[str, Any] | None = None,
    ):
        super().__init__(f"{status} {title or 'error'}: {detail}")
        self.status = status
        self.detail = detail
        self.type = type
        self.title = title
        self.problem = problem or {}

    @property
    def slug(self) -> str:
        """The last path segment of the problem type, e.g. ``schema-mismatch``."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]


class ProtocolError(ClientError):
    """The server's answer broke the protocol (wrong HTTP version, media type, echo, ...)."""


# One entry of ``GET /v1/scenes`` (raw counts, schema names, plugin, canary): see scenes.py.
SceneInfo = SceneDescription


def _scene_entry(obj: Any) -> SceneDescription:
    try:
        return SceneDescription.from_json(obj)
    except ValueError as error:
        raise ProtocolError(f"malformed scene entry: {error}") from None


def _media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _ssl_verify(verify: str | os.PathLike[str] | bool | ssl.SSLContext) -> ssl.SSLContext | bool:
    """Turn a CA-certificate path into an SSL context (httpx no longer takes paths)."""
    if isinstance(verify, (str, os.PathLike)):
        return ssl.create_default_context(cafile=os.fspath(verify))
    return verify


class ScoreClient:
    """A synchronous SceneScore client.

    ``verify`` is a path to a CA certificate (PEM), ``True`` for the system trust
    store, ``False`` to skip verification, or an :class:`ssl.SSLContext`.

    With ``http2=True`` (the default) every response must arrive over HTTP/2:
    ``https://`` URLs negotiate it with ALPN, ``http://`` URLs use HTTP/2 with prior
    knowledge (h2c). ``transport`` replaces the network layer (used by the tests).
    """

    def __init__(
        self,
        base_url: str,
        verify: str | os.PathLike[str] | bool | ssl.SSLContext = True,
        http2: bool = True,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self._require_http2 = http2
        cleartext = httpx.URL(base_url).scheme == "http"
        self._http = httpx.Client(
            base_url=base_url,
            verify=_ssl_verify(verify),
            http1=not (http2 and cleartext),
            http2=http2,
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> "ScoreClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- endpoints ---------------------------------------------------------

    def score(
        self,
        scene: str,
        context_ids: Any,
        context_dense: Any,
        item_ids: Any,
        item_dense: Any,
        request_id: int | None = None,
    ) -> ScoreResponse:
        """Score candidates with the binary format.

        Arguments are those of :func:`wire.encode_request`; ``request_id`` defaults to
        a random 64-bit value. Raises :class:`ProblemError` on an error status,
        :class:`ProtocolError` if the answer is not a matching HTTP/2 binary response.
        """
        request_id = secrets.randbits(64) if request_id is None else request_id
        body = encode_request(scene, context_ids, context_dense, item_ids, item_dense, request_id)
        response = self._http.post(
            SCORE_PATH,
            content=body,
            headers={"content-type": CONTENT_TYPE, "accept": f"{CONTENT_TYPE}, {PROBLEM_CONTENT_TYPE}"},
        )
        self._check_response(response, CONTENT_TYPE)
        try:
            result = decode_response(response.content)
        except WireError as error:
            raise ProtocolError(f"undecodable response body: {error.detail}") from error
        self._check_echo(response, result, request_id, scene, len(item_ids))
        return result

    def score_json(
        self,
        scene: str,
        context_ids: Any,
        context_dense: Any,
        item_ids: Any,
        item_dense: Any,
        request_id: int | None = None,
    ) -> ScoreResponse:
        """Like :meth:`score`, but with the ``application/json`` request and response."""
        request_id = secrets.randbits(64) if request_id is None else request_id
        document = request_to_json(scene, context_ids, context_dense, item_ids, item_dense, request_id)
        response = self._http.post(
            SCORE_PATH,
            content=json.dumps(document, separators=(",", ":")).encode("utf-8"),
            headers={"content-type": JSON_CONTENT_TYPE, "accept": f"{JSON_CONTENT_TYPE}, {PROBLEM_CONTENT_TYPE}"},
        )
        self._check_response(response, JSON_CONTENT_TYPE)
        try:
            result = response_from_json(response.json())
        except (ValueError, WireError) as error:
            raise ProtocolError(f"undecodable JSON response: {error}") from error
        self._check_echo(response, result, request_id, scene, len(document["candidates"]))
        return result

    def health(self) -> dict[str, Any]:
        """``GET /readyz``: the status document when ready; :class:`ProblemError` (503) if not."""
        response = self._http.get(HEALTH_PATH, headers={"accept": JSON_CONTENT_TYPE})
        self._check_response(response, JSON_CONTENT_TYPE)
        return response.json()

    def scenes(self) -> list[SceneInfo]:
        """``GET /v1/scenes``: every servable scene with its stable head version, raw input
        schema (counts and names), plugin and canary."""
        response = self._http.get(SCENES_PATH, headers={"accept": JSON_CONTENT_TYPE})
        self._check_response(response, JSON_CONTENT_TYPE)
        document = response.json()
        if not isinstance(document, dict) or not isinstance(document.get("scenes"), list):
            raise ProtocolError('scenes response must be an object with a "scenes" array')
        return [_scene_entry(entry) for entry in document["scenes"]]

    # -- checks --------------------------------------------------------------

    def _check_response(self, response: httpx.Response, media_type: str) -> None:
        """HTTP version first (a proxy downgrade explains everything else), then status, then type."""
        if self._require_http2 and response.http_version != "HTTP/2":
            raise ProtocolError(
                f"server answered over {response.http_version}; SceneScore requires HTTP/2"
            )
        if response.status_code != 200:
            raise self._problem(response)
        if _media_type(response) != media_type:
            raise ProtocolError(
                f"expected content type {media_type}, got {response.headers.get('content-type')!r}"
            )

    @staticmethod
    def _problem(response: httpx.Response) -> ProblemError:
        status = response.status_code
        if _media_type(response) == PROBLEM_CONTENT_TYPE:
            try:
                problem = response.json()
            except ValueError:
                problem = None
            if isinstance(problem, dict):
                return ProblemError(
                    status,
                    str(problem.get("detail", "")),
                    type=str(problem.get("type", "about:blank")),
                    title=str(problem.get("title", "")),
                    problem=problem,
                )
        text = response.text[:200]
        return ProblemError(status, f"no problem document in the response: {text!r}")

    @staticmethod
    def _check_echo(
        response: httpx.Response,
        result: ScoreResponse,
        request_id: int,
        scene: str,
        n_candidates: int,
    ) -> None:
        if result.request_id != request_id:
            raise ProtocolError(f"response request_id {result.request_id}, sent {request_id}")
        if result.scene != scene:
            raise ProtocolError(f"response scene {result.scene!r}, sent {scene!r}")
        if result.n_candidates != n_candidates:
            raise ProtocolError(f"response has {result.n_candidates} candidates, sent {n_candidates}")
        header = response.headers.get(HEAD_VERSION_HEADER)
        if header is None:
            raise ProtocolError(f"response lacks the {HEAD_VERSION_HEADER} header")
        try:
            header_version = unquote(header, errors="strict")
        except UnicodeDecodeError:
            raise ProtocolError(f"{HEAD_VERSION_HEADER} {header!r} is not percent-encoded UTF-8") from None
        if header_version != result.head_version:
            raise ProtocolError(
                f"{HEAD_VERSION_HEADER} is {header!r} but the body says {result.head_version!r}"
            )
