"""Security headers on every answer (Flask-Talisman), and the client address behind proxies.

- A Content-Security-Policy: scripts, styles, images and connections from this site only;
  the one inline script (GOV.UK Frontend's ``js-enabled``) carries the request's nonce; no
  plugins, no framing (``frame-ancestors 'none'``), forms post only here (and on to Stripe's
  onboarding).
- ``Strict-Transport-Security`` outside development (a browser that saw it uses HTTPS only).
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: strict-origin-when-cross-origin``
  and ``X-Frame-Options: DENY`` for older browsers.
- A ``Permissions-Policy`` that turns off the camera, microphone, location and payment
  APIs, except the camera on pages that scan QR codes (``@allows_camera``).

TLS ends at the reverse proxy, so nothing here redirects to HTTPS; the proxy does. With
``CIVIC_CREDITS_TRUSTED_PROXIES = n`` Werkzeug's ``ProxyFix`` takes the client's address,
scheme and host from the ``X-Forwarded-*`` headers the last ``n`` proxies set, so sign-in
limits count each client, not the proxy (README, "Deploying").
"""

from __future__ import annotations

from flask import request
from flask_talisman import Talisman
from flask_talisman.talisman import NONCE_LENGTH, get_random_string
from werkzeug.middleware.proxy_fix import ProxyFix

SELF = "'self'"
CONTENT_SECURITY_POLICY = {
    "default-src": SELF,
    "script-src": SELF,
    "style-src": SELF,
    "img-src": [SELF, "data:"],
    "font-src": SELF,
    "connect-src": SELF,
    # The QR scanner decodes in a worker it starts from a blob.
    "worker-src": [SELF, "blob:"],
    "object-src": "'none'",
    "base-uri": SELF,
    # A partner's "Connect a Stripe account" form is answered by a redirect to Stripe's
    # onboarding, which browsers check against form-action too.
    "form-action": [SELF, "https://connect.stripe.com"],
    "frame-ancestors": "'none'",
}
#: Powerful browser features no page of ours uses.
PERMISSIONS_POLICY = {
    "camera": "()",
    "microphone": "()",
    "geolocation": "()",
    "payment": "()",
    "usb": "()",
    "browsing-topics": "()",
}
#: The same, with the camera allowed for this site (pages that scan QR codes).
CAMERA_PERMISSIONS_POLICY = {**PERMISSIONS_POLICY, "camera": "(self)"}
HSTS_MAX_AGE = 365 * 24 * 60 * 60


class Headers(Talisman):
    """Talisman, with the nonce made when a template first asks for it.

    Talisman makes it in a before-request hook, which an error raised by an earlier hook
    (a refused request) skips; its error page would then have an inline script without one.
    """

    def _get_nonce(self):
        if not getattr(request, "csp_nonce", None):
            request.csp_nonce = get_random_string(NONCE_LENGTH)
        return request.csp_nonce


headers = Headers()


def allows_camera(view):
    """Mark a view whose page scans QR codes: its Permissions-Policy allows the camera."""
    view.talisman_view_options = {"permissions_policy": CAMERA_PERMISSIONS_POLICY}
    return view


def init_app(app) -> None:
    """Security headers on every response; ProxyFix for the configured trusted hops."""
    development = app.config["CIVIC_CREDITS_ENV"] == "development" or app.debug
    headers.init_app(
        app,
        force_https=False,
        strict_transport_security=not development,
        strict_transport_security_max_age=HSTS_MAX_AGE,
        strict_transport_security_include_subdomains=False,
        content_security_policy=CONTENT_SECURITY_POLICY,
        content_security_policy_nonce_in=["script-src"],
        frame_options="DENY",
        referrer_policy="strict-origin-when-cross-origin",
        permissions_policy=PERMISSIONS_POLICY,
        # The cookie flags are config's (core.config.finalise decides them): Talisman would
        # otherwise make the session cookie Secure on plain-HTTP development servers.
        session_cookie_secure=bool(app.config["SESSION_COOKIE_SECURE"]),
        session_cookie_http_only=bool(app.config["SESSION_COOKIE_HTTPONLY"]),
        session_cookie_samesite=app.config["SESSION_COOKIE_SAMESITE"],
    )
    hops = trusted_proxies(app.config.get("TRUSTED_PROXIES", 0))
    if hops:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
        )


def trusted_proxies(value) -> int:
    """The number of trusted proxy hops, from a setting that may be a string."""
    from core.config import ConfigurationError

    try:
        hops = int(value or 0)
    except (TypeError, ValueError):
        hops = -1
    if not 0 <= hops <= 10:
        raise ConfigurationError(
            "CIVIC_CREDITS_TRUSTED_PROXIES must be a whole number of proxy hops from 0 to 10 "
            f"(got {value!r})."
        )
    return hops
