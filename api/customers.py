"""Customers: register (with identity matching), read the profile, look up by identity."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from api.auth import tenant_of
from api.commands import IdempotencyKey, parse_uuid, run
from api.customer_commands import CustomerRootCommands
from api.errors import bad_request, not_found
from api.schemas import (
    CustomerList,
    CustomerProfile,
    CustomerRegistered,
    RegisterCustomerBody,
    problem_responses,
)
from application.identities import parse_identity
from application.permissions import Permission
from application.program import program_rules
from application.registration import RegisterCustomer
from domain.errors import InvalidInput
from domain.values import fold_text
from projections import queries

MinPosition = Annotated[
    int | None,
    Parameter(ge=0, description="wait until the read model has applied this position"),
]


class CustomerController(CustomerRootCommands, Controller):
    path = "/v1/customers"
    tags = ["customers"]

    @post(
        "/",
        operation_id="RegisterCustomer",
        opt={"permission": Permission.CUSTOMERS_WRITE},
        sync_to_thread=True,
        status_code=201,
        responses=problem_responses(400, 401, 403, 409, 413, 422, 503),
        summary="Register a customer, or match the one holding an identity",
    )
    def register(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[RegisterCustomerBody],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[CustomerRegistered]:
        return run(request, RegisterCustomer.of(data), idempotency_key)

    @get(
        "/{customer_id:str}",
        operation_id="GetCustomer",
        opt={"permission": Permission.CUSTOMERS_READ},
        responses=problem_responses(400, 401, 403, 404, 503),
        summary="The 360-degree profile",
    )
    async def get_customer(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        min_position: MinPosition = None,
    ) -> Response[CustomerProfile]:
        cid = parse_uuid(customer_id)
        schema = tenant_of(request).schema
        async with request.app.state.read_pool.connection() as conn:
            await queries.wait_for_profile(conn, schema, min_position)
            doc = await queries.profile_doc(conn, schema, cid) if cid else None
        if doc is None:
            raise not_found("customer_not_found", f"customer {customer_id} does not exist")
        return Response(doc.encode(), media_type="application/json")

    @get(
        "/",
        operation_id="FindCustomers",
        opt={"permission": Permission.CUSTOMERS_READ},
        responses=problem_responses(400, 401, 403, 503),
        summary="Find customers by identity (type:value), phone or email",
    )
    async def find_customers(
        self,
        request: Request[Any, Any, Any],
        identity: FromQuery[str | None] = None,
        phone: FromQuery[str | None] = None,
        email: FromQuery[str | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Parameter(description="next_cursor of the last page")] = None,
        min_position: MinPosition = None,
    ) -> Response[CustomerList]:
        given = [
            (n, v) for n, v in (("identity", identity), ("phone", phone), ("email", email)) if v
        ]
        if len(given) != 1:
            raise bad_request(
                "invalid_parameter",
                "give exactly one of identity, phone or email",
                field="identity",
            )
        column, raw = given[0]
        if "\x00" in raw:
            # PostgreSQL text cannot hold NUL, so nothing can match; say so instead of a 500.
            raise bad_request("invalid_parameter", "NUL characters are not allowed", field=column)
        after = parse_uuid(cursor) if cursor is not None else None
        if cursor is not None and after is None:
            raise bad_request(
                "invalid_cursor", "cursor must be a next_cursor value", field="cursor"
            )
        tenant = tenant_of(request)
        if column in ("phone", "email"):
            # Phones and emails are identities, normalised as registration normalised them.
            rules = await asyncio.to_thread(program_rules, tenant.app)
            try:
                value = parse_identity(column, raw, rules, field=column).value
            except InvalidInput as e:
                raise bad_request("invalid_parameter", e.detail, field=column) from None
            column, key = "identity", (column, value)
        else:
            key = _lookup_key(column, raw)
        schema = tenant.schema
        async with request.app.state.read_pool.connection() as conn:
            await queries.wait_for_profile(conn, schema, min_position)
            rows = await queries.profile_docs_by(
                conn, schema, column=column, key=key, after=after, limit=limit
            )
        next_cursor = msgspec.json.encode(str(rows[-1][0]) if len(rows) == limit else None)
        items = ",".join(doc for _, doc in rows).encode()
        return Response(
            b'{"items":[' + items + b'],"next_cursor":' + next_cursor + b"}",
            media_type="application/json",
        )


def _lookup_key(column: str, raw: str) -> tuple[str, ...]:
    """The looked-up value(s), normalised the way registration normalised the stored ones:
    ``(type, value)`` for an identity, ``(value,)`` for a phone or an email."""
    if column == "identity":
        type_, sep, value = raw.partition(":")
        if not sep or not type_ or not value:
            raise bad_request("invalid_parameter", "identity must be <type>:<value>", field=column)
        return (fold_text(type_).lower(), fold_text(value))
    folded = fold_text(raw)
    return (folded.lower() if column == "email" else folded,)
