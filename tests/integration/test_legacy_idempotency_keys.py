"""Keys completed before the kernel (tenant schema < 5: no ``outcome``, the fingerprint of the
wire body) must still replay their answer.

Before the kernel a key's fingerprint was the SHA-256 of the route's request body; the kernel
fingerprints the command (body and path parameters). A client that retries across the upgrade
with the same key and the same body sent the same request: it must get the first answer (the
customer it registered), not ``idempotency_key_reused`` with no way to learn what happened.
"""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import uuid4

import msgspec
import psycopg
from psycopg.sql import SQL, Identifier

from api.schemas import IdentityIn, RegisterCustomerBody
from application.kernel import Caller, Outcome, execute
from application.registration import RegisterCustomer
from infrastructure.tenancy import Tenant


def _legacy_fingerprint(request: Any) -> str:
    """How the API fingerprinted a request before the kernel (``IdempotencyKey.for_request``)."""
    canonical = msgspec.json.encode(msgspec.to_builtins(request), order="sorted")
    return hashlib.sha256(canonical).hexdigest()


def test_a_registration_key_completed_before_the_kernel_replays_its_answer(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    body = RegisterCustomerBody(identities=[IdentityIn("member_no", "legacy-1")], name="Old")
    customer_id = str(uuid4())
    sql.execute(
        SQL(
            "INSERT INTO {}.idempotency_keys (scope, key, fingerprint, state, status, body,"
            " position, locked_until) VALUES (%s, %s, %s, 'done', 201, %s, 7, now())"
        ).format(Identifier(tenant.schema)),
        (
            "RegisterCustomer",
            "client-key-1",
            _legacy_fingerprint(body),
            msgspec.json.encode({"customer_id": customer_id, "matched": False}),
        ),
    )
    caller = Caller("t", tenant.slug, tenant.idempotency)

    answer = execute(tenant.app, RegisterCustomer.of(body), caller, client_id="client-key-1")

    assert answer.outcome is Outcome.REPLAYED
    assert answer.body["customer_id"] == customer_id
