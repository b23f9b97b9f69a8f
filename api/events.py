"""The event feed for integrators: every committed public event of the tenant, in order, once."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import Parameter

from api.auth import tenant_of
from api.commands import position_cursor
from api.errors import bad_request
from api.schemas import Feed, FeedItem, problem_responses
from application.permissions import Permission
from application.public_events import BY_NAME, BY_TOPIC, PUBLIC_EVENTS


class EventFeedController(Controller):
    path = "/v1/events"
    tags = ["events"]

    @get(
        "/",
        operation_id="ReadEventFeed",
        opt={"permission": Permission.EVENTS_READ},
        sync_to_thread=True,
        responses=problem_responses(400, 401, 403),
        summary="Public events after a position, in position order",
    )
    def read_feed(
        self,
        request: Request[Any, Any, Any],
        # As a cursor: at most 18 digits (a bigint position).
        after: Annotated[int, Parameter(ge=0, le=10**18 - 1)] = 0,
        cursor: Annotated[str | None, Parameter(description="alias of after")] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        types: Annotated[str | None, Parameter(description="comma-separated public types")] = None,
    ) -> Feed:
        after = position_cursor(cursor, after)
        wanted = PUBLIC_EVENTS
        if types:
            names = [t.strip() for t in types.split(",") if t.strip()]
            unknown = [n for n in names if n not in BY_NAME]
            if unknown:
                raise bad_request(
                    "unknown_event_type",
                    f"unknown event types: {', '.join(unknown)}",
                    field="types",
                )
            wanted = tuple(BY_NAME[n] for n in names)
        app = tenant_of(request).app
        notes = app.recorder.select_notifications(
            start=after,
            limit=limit,
            topics=[p.topic for p in wanted],
            inclusive_of_start=False,
        )
        items = []
        app.mapper.prepare(notes)
        for note in notes:
            public = BY_TOPIC[note.topic]
            event = app.mapper.to_domain_event(note)
            items.append(
                FeedItem(
                    position=note.id,
                    type=public.name,
                    schema_version=public.version,
                    stream_id=str(note.originator_id),
                    version=note.originator_version,
                    occurred_at=event.timestamp.isoformat(),
                    data=public.to_data(event),
                )
            )
        next_cursor = str(items[-1].position) if items else str(after)
        return Feed(items=items, next_cursor=next_cursor)
