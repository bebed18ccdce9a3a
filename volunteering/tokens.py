"""Signed tokens in check-in QR codes and residents' cards.

Tokens are signed with itsdangerous from SECRET_KEY, each kind with its own salt so one kind
can never be passed off as another. They carry only ids, times and a random nonce, never
personal data: a photo of a QR code tells nobody who the resident is.

- *rotating* check-in token: ``{"s": session_id, "n": nonce}`` stamped with its issue time,
  valid CHECKIN_TOKEN_TTL_SECONDS (the check-in screen fetches a new one before then).
- *poster* token: ``{"s": session_id, "p": 1}``, no expiry of its own: valid only while the
  session is open, so a printed poster stops working when the session is over.
- *scan receipt*: ``{"s": session_id, "a": scanned_at}``, given to a resident who scanned a
  valid code but had to sign in first; valid CHECKIN_SIGN_IN_MINUTES.
- *card* token: ``{"u": resident_id}``, printed on a resident's personal card.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from core.errors import DomainError
from core.timeutil import utcnow

CHECKIN_SALT = "civic-credits.volunteering.checkin.v1"
POSTER_SALT = "civic-credits.volunteering.poster.v1"
RECEIPT_SALT = "civic-credits.volunteering.scan-receipt.v1"
CARD_SALT = "civic-credits.volunteering.card.v1"


class TokenError(DomainError):
    """A check-in or card token was refused."""

    status = 400
    code = "token_invalid"


class TokenInvalid(TokenError):
    status = 400
    code = "token_invalid"


class TokenExpired(TokenError):
    status = 422
    code = "token_expired"


@dataclass(frozen=True)
class ScannedToken:
    """What a valid check-in token says: which session, and when it was scanned or issued."""

    session_id: int
    #: "rotating", "poster" or "receipt".
    kind: str
    #: For a receipt, when the original code was scanned; otherwise None (now).
    scanned_at: datetime | None = None


def _timed(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def _plain(salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=salt)


def token_ttl() -> int:
    """Seconds a rotating check-in token is valid."""
    return int(current_app.config["CHECKIN_TOKEN_TTL_SECONDS"])


def rotating_token(session_id: int) -> tuple[str, datetime]:
    """A fresh rotating check-in token for the session, and when it expires."""
    token = _timed(CHECKIN_SALT).dumps({"s": session_id, "n": secrets.token_urlsafe(6)})
    return token, utcnow() + timedelta(seconds=token_ttl())


def poster_token(session_id: int) -> str:
    """The printable poster's token for the session (valid only while it is open)."""
    return _plain(POSTER_SALT).dumps({"s": session_id, "p": 1})


def receipt_token(session_id: int, scanned_at: datetime) -> str:
    """Proof that a valid code was scanned at ``scanned_at``, to finish after signing in."""
    return _timed(RECEIPT_SALT).dumps({"s": session_id, "a": int(scanned_at.timestamp())})


def card_token(resident_id: int) -> str:
    """The token printed in a resident's card QR code."""
    return _plain(CARD_SALT).dumps({"u": resident_id})


def read_checkin_token(token: str) -> ScannedToken:
    """Which session a scanned check-in code is for; ``token_invalid``/``token_expired``."""
    if not isinstance(token, str) or not token or len(token) > 500:
        raise TokenInvalid("This check-in code is not valid. Scan the organiser's code again.")
    try:
        data = _timed(CHECKIN_SALT).loads(token, max_age=token_ttl())
        return ScannedToken(_session_id(data), "rotating")
    except SignatureExpired:
        raise TokenExpired(
            "This check-in code has expired. Scan the code on the organiser's screen again."
        ) from None
    except BadSignature:
        pass
    try:
        data = _plain(POSTER_SALT).loads(token)
        return ScannedToken(_session_id(data), "poster")
    except BadSignature:
        pass
    minutes = int(current_app.config["CHECKIN_SIGN_IN_MINUTES"])
    try:
        data = _timed(RECEIPT_SALT).loads(token, max_age=minutes * 60)
        scanned_at = datetime.fromtimestamp(int(data["a"]), UTC)
        return ScannedToken(_session_id(data), "receipt", scanned_at)
    except SignatureExpired:
        raise TokenExpired(
            "You took too long to sign in after scanning. Scan the organiser's code again."
        ) from None
    except (BadSignature, KeyError, TypeError, ValueError):
        pass
    raise TokenInvalid("This check-in code is not valid. Scan the organiser's code again.")


def read_card_token(token: str) -> int:
    """The resident id printed on a card; ``token_invalid`` otherwise."""
    try:
        data = _plain(CARD_SALT).loads(token or "")
        return int(data["u"])
    except (BadSignature, KeyError, TypeError, ValueError):
        raise TokenInvalid("This is not a resident's card code.") from None


def _session_id(data) -> int:
    try:
        return int(data["s"])
    except (KeyError, TypeError, ValueError):
        raise TokenInvalid("This check-in code is not valid.") from None


def card_number(resident_id: int) -> str:
    """The number printed under a card's QR code, typed when the camera cannot read it.

    The resident id with a Luhn check digit, so a mistyped digit is caught.
    """
    digits = f"{resident_id:06d}"
    return digits + str(luhn_check_digit(digits))


def resident_id_from_card_number(number: str) -> int:
    """The resident id of a typed card number; ``token_invalid`` when the check digit fails."""
    digits = "".join(ch for ch in (number or "") if ch.isdigit())
    if len(digits) < 2 or luhn_check_digit(digits[:-1]) != int(digits[-1]):
        raise TokenInvalid("That card number is not right. Check it and type it again.")
    return int(digits[:-1])


def luhn_check_digit(digits: str) -> int:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return (10 - total % 10) % 10
