"""Optional access control: a bearer token and/or HTTP basic credentials from ``[http]``.

Secrets are compared with ``hmac.compare_digest``. Browsers cannot put an ``Authorization`` header on
``<img src>``, so the token is also accepted as ``?token=`` (the page passes it on to its streams);
basic credentials need nothing special, the browser resends them itself.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from zmqcam.config import HttpConfig


def required(http: HttpConfig) -> bool:
    return http.token is not None or http.basic_user is not None


def challenge(http: HttpConfig, metrics: bool = False) -> str:
    """The ``WWW-Authenticate`` value of a 401 (of ``/metrics`` with ``metrics``)."""
    challenges = []
    if http.token is not None or (metrics and http.metrics_token is not None):
        challenges.append('Bearer realm="zmqcam"')
    if http.basic_user is not None:
        challenges.append('Basic realm="zmqcam", charset="UTF-8"')
    return ", ".join(challenges)


def _same(offered: str, expected: str) -> bool:
    return hmac.compare_digest(offered.encode(), expected.encode())


def authorized(http: HttpConfig, request: web.BaseRequest) -> bool:
    if not required(http):
        return True
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if http.token is not None:
        offered = credentials if scheme == "bearer" else request.query.get("token", "")
        if offered and _same(offered, http.token):
            return True
    if http.basic_user is not None and http.basic_password is not None and scheme == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(":")
        # both comparisons always run, so timing does not tell which one failed
        user_ok = _same(user, http.basic_user)
        password_ok = _same(password, http.basic_password)
        return bool(sep) and user_ok and password_ok
    return False


def metrics_authorized(http: HttpConfig, request: web.BaseRequest) -> bool:
    """``/metrics``: what lets in anywhere else, or ``metrics_token`` (for a scraper that should not
    hold the viewers' credentials). With only ``metrics_token`` set, it alone opens ``/metrics``."""
    if http.metrics_token is not None:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        offered = credentials.strip() if scheme.lower() == "bearer" else request.query.get("token", "")
        if offered and _same(offered, http.metrics_token):
            return True
        if not required(http):
            return False
    return authorized(http, request)
