"""A small Stripe-compatible server for Connect, on 127.0.0.1, for tests and benchmarks.

localstripe serves PaymentIntents but has no Connect, so this fake serves what the scheme
uses, over real HTTP, to the real ``stripe`` SDK (point ``STRIPE_API_BASE`` at ``.url``):

- ``POST /v1/accounts``, ``GET /v1/accounts/{id}``: Express accounts. They start unable to
  receive payouts; following an account link's URL (``GET /express/onboarding/{token}``)
  or ``complete_onboarding()`` finishes onboarding and emits ``account.updated``.
- ``POST /v1/account_links``: onboarding links.
- ``POST /v1/transfers``, ``GET /v1/transfers/{id}``, ``GET /v1/transfers?transfer_group=``,
  ``POST /v1/transfers/{id}/reversals``: transfers to connected accounts, emitting
  ``transfer.created`` and ``transfer.reversed``.
- ``GET /v1/payouts/{id}`` (with ``Stripe-Account``), ``GET /v1/events/{id}``.
- ``GET /v1/balance_transactions`` (``?payout=``, ``?type=``, ``?source=``, ``limit`` and
  ``starting_after`` paging, ``expand[]=data.source``) and ``GET /v1/balance_transactions/{id}``,
  on the platform or, with ``Stripe-Account``, on a connected account. As on Stripe, a
  transfer to a connected account makes a payment there (``py_...``, a charge whose
  ``source_transfer`` is the transfer, named by the transfer's ``destination_payment``) with
  a balance transaction of type ``payment``; a reversal takes it back (``payment_refund``);
  an automatic payout (``pay_out``) sweeps what the account holds into one payout (its own
  balance transaction of type ``payout``) and listing by ``payout`` returns the transactions
  it paid out; a failed payout gives the money back (``payout_failure``).

Stripe's semantics kept: bearer key auth (401), form-encoded nested parameters, error
bodies ``{"error": {"type", "code", "message", "param"}}`` with Stripe's statuses, and
``Idempotency-Key`` on POST: the same key with the same parameters returns the first
response again (``Idempotent-Replayed: true``), including a saved 500; with other
parameters it is a 400 ``idempotency_error``; while the first is still running, a 409;
requests refused by validation are not saved.

Test controls (Python, same process): ``fail_next`` (an HTTP error or a dropped
connection), ``hold_transfers`` (the transfer is made, the answer waits: a client killed
meanwhile never hears of it), ``reverse_transfer``, ``pay_out``, ``fail_payout``, and webhook
delivery to an endpoint with a real ``Stripe-Signature`` (``deliver``), or as signed
payloads for a test client (``signed``).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

API_VERSION = "2024-06-20"


class StripeHTTPError(Exception):
    """An error answer in Stripe's shape."""

    def __init__(self, status: int, type_: str, message: str, code=None, param=None):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message}}
        if code:
            self.body["error"]["code"] = code
        if param:
            self.body["error"]["param"] = param


def nested(pairs) -> dict:
    """Stripe's form encoding (``metadata[a]=1``, ``items[0][x]=2``) as nested dicts."""
    result: dict = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        target = result
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return result


def boolean(value) -> bool:
    return str(value).lower() in ("true", "1")


@dataclass
class Failure:
    method: str
    path_prefix: str
    status: int
    times: int
    drop: bool
    type_: str = "api_error"


@dataclass
class Saved:
    """An idempotent request: its parameters and, once done, its answer."""

    fingerprint: str
    status: int | None = None
    body: dict | None = None
    done: threading.Event = field(default_factory=threading.Event)


class FakeStripe:
    """The fake's state and its HTTP server. Use as a context manager."""

    def __init__(self, api_key_prefix: str = "sk_test_", balance_pence: int = 10**12):
        self.api_key_prefix = api_key_prefix
        self.balance = balance_pence
        self.lock = threading.RLock()
        self.accounts: dict[str, dict] = {}
        self.links: dict[str, str] = {}
        self.transfers: dict[str, dict] = {}
        self.payouts: dict[str, dict] = {}
        #: Payments received by connected accounts (``py_...``), and balance transactions
        #: (``_account``: whose, None for the platform; ``_payout``: the payout that took it).
        self.payments: dict[str, dict] = {}
        self.balance_transactions: dict[str, dict] = {}
        self.events: list[dict] = []
        self.undelivered: list[dict] = []
        self.idempotent: dict[tuple[str, str], Saved] = {}
        self.failures: list[Failure] = []
        self.requests: list[tuple[str, str]] = []
        self.transfer_posts = 0
        self.hold_seconds = 0.0
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self.ids = itertools.count(1)
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeStripe:
        fake = self

        class Handler(StripeHandler):
            state = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(10)
            self.server = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------ controls

    def fail_next(
        self,
        method: str,
        path_prefix: str,
        *,
        status: int = 500,
        times: int = 1,
        drop: bool = False,
        type_: str = "api_error",
    ) -> None:
        """The next ``times`` matching requests fail (``drop``: connection closed, no answer)."""
        with self.lock:
            self.failures.append(Failure(method, path_prefix, status, times, drop, type_))

    def hold_transfers(self, seconds: float) -> None:
        """Make each transfer, then wait ``seconds`` before answering."""
        self.hold_seconds = seconds

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids):06d}{secrets.token_hex(6)}"

    def emit(self, type_: str, obj: dict, account: str | None = None) -> dict:
        """Record an event (and queue it for delivery)."""
        event = {
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "type": type_,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": json.loads(json.dumps(obj))},
        }
        if account:
            event["account"] = account
        with self.lock:
            self.events.append(event)
            self.undelivered.append(event)
        return event

    def complete_onboarding(self, account_id: str) -> dict:
        with self.lock:
            account = self.accounts[account_id]
            account.update(
                details_submitted=True,
                charges_enabled=True,
                payouts_enabled=True,
                capabilities={"transfers": "active"},
            )
        return self.emit("account.updated", account)

    def reverse_transfer(self, transfer_id: str, amount: int | None = None) -> dict:
        with self.lock:
            transfer = self.transfers[transfer_id]
            amount = transfer["amount"] - transfer["amount_reversed"] if amount is None else amount
            reversal = {
                "id": self.new_id("trr"),
                "object": "transfer_reversal",
                "amount": amount,
                "currency": transfer["currency"],
                "transfer": transfer_id,
                "created": int(time.time()),
                "metadata": {},
            }
            transfer["amount_reversed"] += amount
            transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
            transfer["reversals"]["data"].append(reversal)
            transfer["reversals"]["total_count"] = len(transfer["reversals"]["data"])
            self.balance += amount
            payment = self.payments.get(transfer.get("destination_payment") or "")
            if payment is not None:
                # The connected account gives the money back: a refund of its payment.
                payment["amount_refunded"] += amount
                payment["refunded"] = payment["amount_refunded"] >= payment["amount"]
                refund = self.new_id("pyr")
                reversal["destination_payment_refund"] = refund
                self.add_balance_transaction(
                    payment["_account"], -amount, "payment_refund", refund, "refund"
                )
        return self.emit("transfer.reversed", transfer)

    def add_balance_transaction(
        self, account_id: str | None, amount: int, type_: str, source: str, category: str
    ) -> dict:
        """A balance transaction on ``account_id`` (None: the platform), available now."""
        now = int(time.time())
        txn = {
            "id": self.new_id("txn"),
            "object": "balance_transaction",
            "amount": amount,
            "available_on": now,
            "created": now,
            "currency": "gbp",
            "description": None,
            "exchange_rate": None,
            "fee": 0,
            "fee_details": [],
            "net": amount,
            "reporting_category": category,
            "source": source,
            "status": "available",
            "type": type_,
            "_account": account_id,
            "_payout": None,
        }
        self.balance_transactions[txn["id"]] = txn
        return txn

    def pay_out(self, account_id: str, *, status: str = "paid") -> dict:
        """The account's automatic payout: everything it holds that no payout took yet.

        Emits ``payout.created`` (and ``payout.paid`` when ``status`` is ``paid``).
        """
        with self.lock:
            included = [
                t
                for t in self.balance_transactions.values()
                if t["_account"] == account_id and t["_payout"] is None
            ]
            total = sum(t["net"] for t in included)
            now = int(time.time())
            payout = {
                "id": self.new_id("po"),
                "object": "payout",
                "amount": total,
                "arrival_date": now + 2 * 86400,
                "automatic": True,
                "balance_transaction": None,
                "created": now,
                "currency": "gbp",
                "description": "STRIPE PAYOUT",
                "destination": "ba_" + account_id.removeprefix("acct_"),
                "failure_balance_transaction": None,
                "failure_code": None,
                "failure_message": None,
                "livemode": False,
                "metadata": {},
                "method": "standard",
                "reconciliation_status": "completed",
                "source_type": "card",
                "statement_descriptor": None,
                "status": status,
                "type": "bank_account",
            }
            own = self.add_balance_transaction(account_id, -total, "payout", payout["id"], "payout")
            payout["balance_transaction"] = own["id"]
            for txn in [*included, own]:
                txn["_payout"] = payout["id"]
            self.payouts[payout["id"]] = {**payout, "_account": account_id}
        self.emit("payout.created", payout, account=account_id)
        if status == "paid":
            self.emit("payout.paid", payout, account=account_id)
        return payout

    def fail_payout(
        self,
        account_id: str,
        amount: int = 100,
        *,
        payout_id: str | None = None,
        code: str = "account_closed",
        message: str = "The bank account has been closed.",
    ) -> dict:
        """A payout fails (``payout_id``, one of ``pay_out``'s; else a new one of ``amount``
        with nothing in it): its money goes back to the balance; emits ``payout.failed``."""
        with self.lock:
            if payout_id is None:
                payout = {
                    "id": self.new_id("po"),
                    "object": "payout",
                    "amount": amount,
                    "automatic": True,
                    "currency": "gbp",
                    "status": "failed",
                    "created": int(time.time()),
                }
                self.payouts[payout["id"]] = {**payout, "_account": account_id}
            else:
                payout = self.payouts[payout_id]
                assert payout["_account"] == account_id, "another account's payout"
            back = self.add_balance_transaction(
                account_id, payout["amount"], "payout_failure", payout["id"], "payout_reversal"
            )
            payout.update(
                status="failed",
                failure_code=code,
                failure_message=message,
                failure_balance_transaction=back["id"],
            )
            self.payouts[payout["id"]].update(payout)
            public = {k: v for k, v in payout.items() if not k.startswith("_")}
        return self.emit("payout.failed", public, account=account_id)

    def transfers_for(self, transfer_group: str) -> list[dict]:
        with self.lock:
            return [t for t in self.transfers.values() if t["transfer_group"] == transfer_group]

    # ------------------------------------------------------------------ webhooks

    def signed(self, event: dict, secret: str, timestamp: int | None = None) -> tuple[bytes, str]:
        """The event as Stripe would POST it: the raw body and its ``Stripe-Signature``."""
        payload = json.dumps(event, indent=2).encode()
        return payload, signature_header(payload, secret, timestamp)

    def deliver(self, url: str | None = None, secret: str | None = None) -> list[int]:
        """POST every undelivered event, signed, to the endpoint; return the statuses."""
        url, secret = url or self.webhook_url, secret or self.webhook_secret
        with self.lock:
            events, self.undelivered = self.undelivered, []
        statuses = []
        for event in events:
            body, header = self.signed(event, secret)
            request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
                url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Stripe-Signature": header},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                    statuses.append(response.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
                error.close()
        return statuses

    # ------------------------------------------------------------------ API

    def handle(self, method: str, path: str, query: dict, params: dict, headers) -> dict:
        """Route one authenticated API request; return the object or raise StripeHTTPError."""
        parts = [p for p in path.split("/") if p]
        if parts[:1] != ["v1"]:
            raise StripeHTTPError(
                404, "invalid_request_error", f"Unrecognized request URL ({path})."
            )
        parts = parts[1:]
        with self.lock:
            if parts == ["accounts"] and method == "POST":
                return self.create_account(params)
            if len(parts) == 2 and parts[0] == "accounts" and method == "GET":
                return self.get("accounts", parts[1], "account")
            if parts == ["account_links"] and method == "POST":
                return self.create_link(params)
            if parts == ["transfers"] and method == "POST":
                return self.create_transfer(params)
            if parts == ["transfers"] and method == "GET":
                return self.list_transfers(query)
            if len(parts) == 2 and parts[0] == "transfers" and method == "GET":
                return self.get("transfers", parts[1], "transfer")
            if len(parts) == 3 and parts[0] == "transfers" and parts[2] == "reversals":
                self.get("transfers", parts[1], "transfer")
                amount = int(params["amount"]) if "amount" in params else None
                self.reverse_transfer(parts[1], amount)
                return self.transfers[parts[1]]["reversals"]["data"][-1]
            if len(parts) == 2 and parts[0] == "payouts" and method == "GET":
                payout = self.payouts.get(parts[1])
                if payout is None or payout["_account"] != headers.get("Stripe-Account"):
                    raise missing("payout", parts[1])
                return public(payout)
            if parts == ["balance_transactions"] and method == "GET":
                return self.list_balance_transactions(query, headers.get("Stripe-Account"))
            if len(parts) == 2 and parts[0] == "balance_transactions" and method == "GET":
                txn = self.balance_transactions.get(parts[1])
                if txn is None or txn["_account"] != headers.get("Stripe-Account"):
                    raise missing("balance transaction", parts[1])
                return public(txn)
            if len(parts) == 2 and parts[0] == "events" and method == "GET":
                for event in self.events:
                    if event["id"] == parts[1]:
                        return event
                raise missing("event", parts[1])
        raise StripeHTTPError(404, "invalid_request_error", f"Unrecognized request URL ({path}).")

    def get(self, collection: str, object_id: str, name: str) -> dict:
        found = getattr(self, collection).get(object_id)
        if found is None:
            raise missing(name, object_id)
        return found

    def create_account(self, params: dict) -> dict:
        if params.get("type") not in ("express", "standard", "custom"):
            message = "Invalid type: must be one of express, standard, custom"
            raise StripeHTTPError(400, "invalid_request_error", message, param="type")
        account = {
            "id": self.new_id("acct"),
            "object": "account",
            "type": params["type"],
            "country": params.get("country", "GB"),
            "email": params.get("email"),
            "business_profile": params.get("business_profile", {}),
            "metadata": params.get("metadata", {}),
            "details_submitted": False,
            "charges_enabled": False,
            "payouts_enabled": False,
            "capabilities": {"transfers": "inactive"},
            "created": int(time.time()),
        }
        self.accounts[account["id"]] = account
        return account

    def create_link(self, params: dict) -> dict:
        for name in ("account", "refresh_url", "return_url", "type"):
            if not params.get(name):
                raise StripeHTTPError(
                    400, "invalid_request_error", f"Missing required param: {name}.", param=name
                )
        self.get("accounts", params["account"], "account")
        token = secrets.token_urlsafe(12)
        self.links[token] = params["account"]
        self.links[token + ":return"] = params["return_url"]
        return {
            "object": "account_link",
            "created": int(time.time()),
            "expires_at": int(time.time()) + 300,
            "url": f"{self.url}/express/onboarding/{token}",
        }

    def create_transfer(self, params: dict) -> dict:
        self.transfer_posts += 1
        try:
            amount = int(params.get("amount", ""))
        except ValueError:
            raise StripeHTTPError(
                400, "invalid_request_error", "Invalid integer: amount", param="amount"
            ) from None
        if amount < 1:
            raise StripeHTTPError(
                400, "invalid_request_error", "This value must be greater than or equal to 1.",
                param="amount",
            )  # fmt: skip
        destination = self.accounts.get(params.get("destination", ""))
        if destination is None:
            raise StripeHTTPError(
                400, "invalid_request_error",
                f"No such destination: '{params.get('destination')}'",
                code="resource_missing", param="destination",
            )  # fmt: skip
        if destination["capabilities"].get("transfers") != "active":
            raise StripeHTTPError(
                400, "invalid_request_error",
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                code="insufficient_capabilities_for_transfer", param="destination",
            )  # fmt: skip
        if amount > self.balance:
            raise StripeHTTPError(
                400, "invalid_request_error",
                "You have insufficient available funds in your Stripe account.",
                code="balance_insufficient",
            )  # fmt: skip
        self.balance -= amount
        transfer = {
            "id": self.new_id("tr"),
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "currency": params.get("currency", "gbp"),
            "description": params.get("description"),
            "destination": destination["id"],
            "transfer_group": params.get("transfer_group"),
            "metadata": params.get("metadata", {}),
            "reversed": False,
            "reversals": {"object": "list", "data": [], "has_more": False, "total_count": 0},
            "created": int(time.time()),
            "livemode": False,
        }
        transfer["reversals"]["url"] = f"/v1/transfers/{transfer['id']}/reversals"
        # The platform's side, and the payment the connected account receives.
        transfer["balance_transaction"] = self.add_balance_transaction(
            None, -amount, "transfer", transfer["id"], "transfer"
        )["id"]
        payment = {
            "id": self.new_id("py"),
            "object": "charge",
            "amount": amount,
            "amount_refunded": 0,
            "currency": transfer["currency"],
            "created": transfer["created"],
            "paid": True,
            "refunded": False,
            "status": "succeeded",
            "source_transfer": transfer["id"],
            "livemode": False,
            "metadata": {},
            "_account": destination["id"],
        }
        payment["balance_transaction"] = self.add_balance_transaction(
            destination["id"], amount, "payment", payment["id"], "charge"
        )["id"]
        self.payments[payment["id"]] = payment
        transfer["destination_payment"] = payment["id"]
        self.transfers[transfer["id"]] = transfer
        self.emit("transfer.created", transfer)
        return transfer

    def list_transfers(self, query: dict) -> dict:
        items = list(self.transfers.values())
        for name in ("transfer_group", "destination"):
            if query.get(name):
                items = [t for t in items if t.get(name) == query[name]]
        items.sort(key=lambda t: t["id"], reverse=True)
        limit = int(query.get("limit", 10))
        return {
            "object": "list",
            "data": items[:limit],
            "has_more": len(items) > limit,
            "url": "/v1/transfers",
        }

    def list_balance_transactions(self, query: dict, account_id: str | None) -> dict:
        """Newest first, filtered by ``payout``, ``type``, ``source``; paged by ``limit``
        (1 to 100, default 10) and ``starting_after``; ``expand[]=data.source``."""
        try:
            limit = int(query.get("limit", 10))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise StripeHTTPError(
                400, "invalid_request_error",
                "This value must be greater than or equal to 1 and less than or equal to 100.",
                param="limit",
            )  # fmt: skip
        items = [t for t in self.balance_transactions.values() if t["_account"] == account_id]
        if query.get("payout"):
            payout = self.payouts.get(query["payout"])
            if payout is None or payout["_account"] != account_id:
                raise missing("payout", query["payout"])
            if not payout.get("automatic"):
                raise StripeHTTPError(
                    400, "invalid_request_error",
                    "Balance transaction history can only be filtered on automatic transfers, "
                    "not manual.",
                    param="payout",
                )  # fmt: skip
            items = [t for t in items if t["_payout"] == payout["id"]]
        for name in ("type", "source", "currency"):
            if query.get(name):
                items = [t for t in items if t[name] == query[name]]
        items.sort(key=lambda t: (t["created"], t["id"]), reverse=True)
        after = query.get("starting_after")
        if after:
            ids = [t["id"] for t in items]
            if after not in ids:
                raise missing("balance transaction", after)
            items = items[ids.index(after) + 1 :]
        expand = query.get("expand") or {}
        expand = set(expand.values()) if isinstance(expand, dict) else {expand}
        data = []
        for txn in items[:limit]:
            shown = public(txn)
            if "data.source" in expand:
                source = self.payments.get(txn["source"]) or self.payouts.get(txn["source"])
                source = source or self.transfers.get(txn["source"])
                if source is not None:
                    shown["source"] = public(source)
            data.append(shown)
        return {
            "object": "list",
            "data": data,
            "has_more": len(items) > limit,
            "url": "/v1/balance_transactions",
        }

    def take_failure(self, method: str, path: str) -> Failure | None:
        with self.lock:
            for failure in self.failures:
                if failure.method == method and path.startswith(failure.path_prefix):
                    failure.times -= 1
                    if failure.times <= 0:
                        self.failures.remove(failure)
                    return failure
        return None


def public(obj: dict) -> dict:
    """The object as the API shows it: without the fake's own ``_`` fields."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def missing(name: str, object_id: str) -> StripeHTTPError:
    return StripeHTTPError(
        404, "invalid_request_error", f"No such {name}: '{object_id}'",
        code="resource_missing", param="id",
    )  # fmt: skip


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """``Stripe-Signature``: ``t=<unix time>,v1=<HMAC-SHA256 of "t.payload">``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class StripeHandler(BaseHTTPRequestHandler):
    """HTTP in and out of the fake."""

    state: FakeStripe
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        return

    def do_GET(self):  # noqa: N802
        self.dispatch("GET")

    def do_POST(self):  # noqa: N802
        self.dispatch("POST")

    def do_DELETE(self):  # noqa: N802
        self.dispatch("DELETE")

    def send_json(self, status: int, body: dict, extra: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", "req_" + secrets.token_hex(8))
        self.send_header("Stripe-Version", API_VERSION)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def dispatch(self, method: str) -> None:
        fake = self.state
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        fake.requests.append((method, split.path))
        if split.path.startswith("/express/onboarding/"):
            self.onboarding(split.path.rsplit("/", 1)[-1])
            return
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer " + fake.api_key_prefix):
            self.send_json(
                401,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": "Invalid API Key provided.",
                    }
                },
            )
            return
        failure = fake.take_failure(method, split.path)
        if failure is not None and failure.drop:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        params = nested(parse_qsl(raw, keep_blank_values=True))
        query = nested(parse_qsl(split.query))
        key = self.headers.get("Idempotency-Key") if method == "POST" else None
        if key is None:
            self.answer(failure, method, split.path, query, params)
            return
        fingerprint = hashlib.sha256(f"{method} {split.path} {raw}".encode()).hexdigest()
        slot = (auth, key)
        with fake.lock:
            saved = fake.idempotent.get(slot)
            first = saved is None
            if first:
                saved = fake.idempotent[slot] = Saved(fingerprint)
        if not first:
            if saved.fingerprint != fingerprint:
                self.send_json(
                    400,
                    {
                        "error": {
                            "type": "idempotency_error",
                            "message": "Keys for idempotent requests can only be used with the "
                            "same parameters they were first used with. Try using a key other "
                            f"than '{key}' if you meant to execute a different request.",
                        }
                    },
                )
                return
            if not saved.done.is_set():
                self.send_json(
                    409,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "idempotency_key_in_use",
                            "message": "There is currently another in-progress request using "
                            "this Stripe-Idempotency-Key, please retry after its completion.",
                        }
                    },
                )
                return
            self.send_json(saved.status, saved.body, {"Idempotent-Replayed": "true"})
            return
        status, body = self.run(failure, method, split.path, query, params)
        with fake.lock:
            if status in (400, 401, 404, 409, 429):
                # Refused before the endpoint ran: Stripe saves no result for the key.
                del fake.idempotent[slot]
            else:
                saved.status, saved.body = status, body
            saved.done.set()
        if status == 200 and split.path == "/v1/transfers" and fake.hold_seconds:
            time.sleep(fake.hold_seconds)
        self.send_json(status, body, {"Idempotency-Key": key})

    def run(self, failure, method, path, query, params) -> tuple[int, dict]:
        if failure is not None:
            return failure.status, {
                "error": {"type": failure.type_, "message": "Something went wrong (injected)."}
            }
        try:
            return 200, self.state.handle(method, path, query, params, self.headers)
        except StripeHTTPError as error:
            return error.status, error.body

    def answer(self, failure, method, path, query, params) -> None:
        status, body = self.run(failure, method, path, query, params)
        self.send_json(status, body)

    def onboarding(self, token: str) -> None:
        """The partner finishes Express onboarding and is sent back to the scheme."""
        fake = self.state
        account_id = fake.links.get(token)
        if account_id is None:
            self.send_json(404, {"error": {"type": "invalid_request_error", "message": "expired"}})
            return
        fake.complete_onboarding(account_id)
        self.send_response(302)
        self.send_header("Location", fake.links[token + ":return"])
        self.send_header("Content-Length", "0")
        self.end_headers()
