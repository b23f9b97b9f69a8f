"""Customer commands beyond registration: profile, identities, merges, roles, owner, consent,
erasure, and the access-request export and change history."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from api.auth import tenant_of
from api.commands import IdempotencyKey, customer_id_of, position_cursor, run
from api.errors import bad_request, not_found
from api.schemas import (
    CommandResult,
    ConsentBody,
    EndOwnerBody,
    IdentitiesBody,
    MergeBody,
    MergeOut,
    OwnerBody,
    Page,
    ParentAgentBody,
    PatchCustomerBody,
    RoleBody,
    TagsBody,
    problem_responses,
)
from application.customers import (
    AddTags,
    ChangeProfile,
    LinkIdentities,
    RemoveTag,
    UnlinkIdentity,
)
from application.merges import MergeCustomers
from application.permissions import Permission
from application.privacy import EraseCustomer, RecordConsent, export_customer
from application.relationships import (
    AddRole,
    AssignOwner,
    EndOwner,
    EndRole,
    SetParentAgent,
)
from projections import queries
from projections.behaviors import customer_behaviors, customer_exists
from projections.customer_history import CustomerHistoryProjection

# The channel a command came through (app, pos, mini_program, ...), recorded for the change
# history; the same query parameter as PATCH's.
Channel = Annotated[
    str | None,
    Parameter(max_length=64, description="the channel the change came through"),
]
WRITE = {"permission": Permission.CUSTOMERS_WRITE}
COMMAND_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 503)


class CustomerCommandController(Controller):
    path = "/v1/customers/{customer_id:str}"
    tags = ["customers"]

    @post(
        "/identities",
        operation_id="LinkIdentities",
        opt=WRITE,
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="Link identities to the customer",
    )
    def link(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        data: JSONBody[IdentitiesBody],
        idempotency_key: IdempotencyKey = None,
        channel: Channel = None,
    ) -> Response[CommandResult]:
        cid = customer_id_of(customer_id)
        raw = [(i.type, i.value) for i in data.identities]
        return run(request, LinkIdentities(cid, raw, channel), idempotency_key)

    @delete(
        "/identities",
        operation_id="UnlinkIdentity",
        opt=WRITE,
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="Unlink one identity (?identity=<type>:<value>)",
    )
    def unlink(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        identity: FromQuery[str],
        idempotency_key: IdempotencyKey = None,
        channel: Channel = None,
    ) -> Response[CommandResult]:
        cid = customer_id_of(customer_id)
        type_, sep, value = identity.partition(":")
        if not sep or not type_ or not value:
            raise bad_request(
                "invalid_parameter", "identity must be <type>:<value>", field="identity"
            )
        return run(request, UnlinkIdentity(cid, (type_, value), channel), idempotency_key)

    @post(
        "/merge",
        operation_id="MergeCustomers",
        opt={"permission": Permission.CUSTOMERS_MERGE},
        sync_to_thread=True,
        status_code=201,
        responses=COMMAND_ERRORS,
        summary="Merge another customer into this one",
    )
    def merge(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        data: JSONBody[MergeBody],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MergeOut]:
        cid = customer_id_of(customer_id)
        return run(request, MergeCustomers(cid, data.source_customer_id), idempotency_key)

    @post(
        "/roles",
        operation_id="AddRole",
        opt=WRITE,
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="Add a role (consumer, agent, guide, ...)",
    )
    def add_role(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        data: JSONBody[RoleBody],
        idempotency_key: IdempotencyKey = None,
        channel: Channel = None,
    ) -> Response[CommandResult]:
        cid = customer_id_of(customer_id)
        return run(request, AddRole(cid, data.role, channel), idempotency_key)

    @delete(
        "/roles/{role:str}",
        operation_id="EndRole",
        opt=WRITE,
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="End a role",
    )
    def end_role(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        role: FromPath[str],
        reason: FromQuery[str | None] = None,
        idempotency_key: IdempotencyKey = None,
        channel: Channel = None,
    ) -> Response[CommandResult]:
        cid = customer_id_of(customer_id)
        return run(request, EndRole(cid, role, reason, channel), idempotency_key)

    @post(
        "/tags",
        operation_id="AddTags",
        opt=WRITE,
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="Put static tags on the customer",
    )
    def add_tags(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        data: JSONBody[TagsBody],
        idempotency_key: IdempotencyKey = None,
        channel: Channel = None,
    ) -> Response[CommandResult]:
        cid = customer_id_of(customer_id)
        return run(request, AddTags(cid, data.tags, channel), idempotency_key)

    @delete(
        "/tags/{tag:str}",
        operation_id="RemoveTag",
        opt=WRITE,
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="Take a static tag off the customer (one not carried: nothing changes)",
    )
    def remove_tag(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        tag: FromPath[str],
        idempotency_key: IdempotencyKey = None,
        channel: Channel = None,
    ) -> Response[CommandResult]:
        cid = customer_id_of(customer_id)
        return run(request, RemoveTag(cid, tag, channel), idempotency_key)

    @post(
        "/parent-agent",
        operation_id="SetParentAgent",
        opt=WRITE,
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="Place an agent under a parent agent (cycles are refused)",
    )
    def set_parent(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        data: JSONBody[ParentAgentBody],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[CommandResult]:
        cid = customer_id_of(customer_id)
        return run(request, SetParentAgent(cid, data.parent_id), idempotency_key)

    @post(
        "/owner",
        operation_id="AssignOwner",
        opt=WRITE,
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="Assign the staff member who owns the customer",
    )
    def assign_owner(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        data: JSONBody[OwnerBody],
        idempotency_key: IdempotencyKey = None,
        channel: Channel = None,
    ) -> Response[CommandResult]:
        cid = customer_id_of(customer_id)
        command = AssignOwner(cid, data.owner, data.reason, channel)
        return run(request, command, idempotency_key)

    @post(
        "/owner/end",
        operation_id="EndOwner",
        opt=WRITE,
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="End the owner relationship (recorded with who ended it)",
    )
    def end_owner(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        data: JSONBody[EndOwnerBody],
        idempotency_key: IdempotencyKey = None,
        channel: Channel = None,
    ) -> Response[CommandResult]:
        cid = customer_id_of(customer_id)
        return run(request, EndOwner(cid, data.by, data.reason, channel), idempotency_key)

    @post(
        "/consents",
        operation_id="RecordConsent",
        opt=WRITE,
        sync_to_thread=True,
        status_code=201,
        responses=COMMAND_ERRORS,
        summary="Grant or withdraw consent for a purpose on a channel",
    )
    def consent(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        data: JSONBody[ConsentBody],
        idempotency_key: IdempotencyKey = None,
        channel: Annotated[
            str | None,
            Parameter(
                max_length=64,
                description="the channel the request came through (the body's channel is the"
                " one the consent covers)",
            ),
        ] = None,
    ) -> Response[CommandResult]:
        cid = customer_id_of(customer_id)
        command = RecordConsent(
            cid,
            purpose=data.purpose,
            channel=data.channel,
            granted=data.granted,
            policy_version=data.policy_version,
            source=data.source,
            via=channel,
        )
        return run(request, command, idempotency_key)

    @get(
        "/export",
        operation_id="ExportCustomer",
        opt={"permission": Permission.CUSTOMERS_EXPORT},
        responses=problem_responses(401, 403, 404),
        summary="Everything held about the person (access request)",
    )
    async def export(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str]
    ) -> Response[Any]:
        tenant = tenant_of(request)
        cid = customer_id_of(customer_id)
        exported = await asyncio.to_thread(export_customer, tenant.app, cid)
        behaviors: list[Any] = []
        async with request.app.state.read_pool.connection() as conn:
            after = 0
            while page := await customer_behaviors(
                conn, tenant.schema, cid, after=after, limit=1000
            ):
                behaviors.extend(page)
                after = page[-1].position
        body = {**exported.document, "behaviors": behaviors}
        return Response(msgspec.json.encode(body), media_type="application/json")

    @get(
        "/history",
        operation_id="CustomerHistory",
        opt={"permission": Permission.CUSTOMERS_READ},
        responses=problem_responses(400, 401, 403, 404, 503),
        summary="Who changed what, when, through which channel",
    )
    async def history(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        cursor: FromQuery[str | None] = None,
        min_position: Annotated[int | None, Parameter(ge=0)] = None,
    ) -> Page:
        cid = customer_id_of(customer_id)
        after = position_cursor(cursor)
        schema = tenant_of(request).schema
        async with request.app.state.read_pool.connection() as conn:
            await queries.wait_for(conn, schema, CustomerHistoryProjection.name, min_position)
            items = await queries.history(conn, schema, cid, after, limit)
            if not items and not await customer_exists(conn, schema, cid):
                raise not_found("customer_not_found", f"customer {customer_id} does not exist")
        next_cursor = str(items[-1].position) if len(items) == limit else None
        return Page(items=msgspec.to_builtins(items), next_cursor=next_cursor)


class CustomerRootCommands:
    """PATCH and DELETE share the profile's path: Litestar wants one controller per path (its
    OPTIONS handler), so these are mixed into ``CustomerController``."""

    @patch(
        "/{customer_id:str}",
        operation_id="ChangeProfile",
        opt=WRITE,
        sync_to_thread=True,
        responses=COMMAND_ERRORS,
        summary="Change profile fields and custom attributes",
    )
    def change_profile(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        data: JSONBody[PatchCustomerBody],
        idempotency_key: IdempotencyKey = None,
        channel: Annotated[
            str | None, Parameter(description="the channel the change came through")
        ] = None,
    ) -> Response[CommandResult]:
        cid = customer_id_of(customer_id)
        fields = {
            k: (v.isoformat() if k == "birthday" and v is not None else v)
            for k, v in msgspec.structs.asdict(data).items()
            if k != "attributes" and v is not msgspec.UNSET
        }
        command = ChangeProfile(cid, fields, data.attributes, channel)
        return run(request, command, idempotency_key)

    @delete(
        "/{customer_id:str}",
        operation_id="EraseCustomer",
        opt={"permission": Permission.CUSTOMERS_ERASE},
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="Erase the person's personal data (crypto-shredding)",
    )
    def erase(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        reason: FromQuery[str | None] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[CommandResult]:
        cid = customer_id_of(customer_id)
        return run(request, EraseCustomer(cid, reason), idempotency_key)
