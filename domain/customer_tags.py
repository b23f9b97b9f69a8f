"""A customer's static (manual) tags.

A mixin of :class:`~domain.customer.Customer`, whose events and state it uses."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain.errors import FieldProblem, InvalidInput, TagLimitReached
from domain.values import fold_text

# Static (manual) tags: codes from the tenant's own vocabulary, stored in clear (not personal
# data: a tag names a group, never a value about the person; docs/identity.md, tags).
TAG_CODE = re.compile(r"^[a-z0-9_:-]{1,64}$")
# A bound per customer keeps the aggregate and the profile document small.
MAX_TAGS = 100


def parse_tag(raw: str, *, field: str = "tags") -> str:
    """A tag code: NFKC-folded, trimmed and lower-cased, then ``^[a-z0-9_:-]{1,64}$``."""
    folded = fold_text(raw).lower()
    if not TAG_CODE.match(folded):
        raise InvalidInput([FieldProblem(field, f"tag {raw!r} must match ^[a-z0-9_:-]{{1,64}}$")])
    return folded


class CustomerTags:
    """``add_tags`` and ``remove_tag``."""

    # What the methods use of Customer (declared for the type checker only).
    if TYPE_CHECKING:
        tags: dict[str, datetime]
        TagsAdded: type[Any]
        TagRemoved: type[Any]

        def require_active(self) -> None: ...
        def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None: ...

    def add_tags(
        self, tags: Iterable[str], *, actor: str, at: datetime, channel: str | None = None
    ) -> tuple[str, ...]:
        """Put on the tags not carried yet (returned; none: nothing recorded). ``tags`` are
        codes checked by ``parse_tag``. More than ``MAX_TAGS`` in all is refused."""
        self.require_active()
        new = tuple(t for t in dict.fromkeys(tags) if t not in self.tags)
        if len(self.tags) + len(new) > MAX_TAGS:
            raise TagLimitReached(MAX_TAGS, len(self.tags), len(new))
        if new:
            self.trigger_event(self.TagsAdded, tags=new, actor=actor, channel=channel, timestamp=at)
        return new

    def remove_tag(self, tag: str, *, actor: str, at: datetime, channel: str | None = None) -> bool:
        """Take a tag off; one not carried records nothing (a repeated DELETE changes nothing)."""
        self.require_active()
        if tag not in self.tags:
            return False
        self.trigger_event(self.TagRemoved, tag=tag, actor=actor, channel=channel, timestamp=at)
        return True
