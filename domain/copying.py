"""Cheap copies of aggregates whose state holds only immutable values inside plain containers.

The application copies every aggregate it takes from its cache (so a command that fails cannot
leave a half-changed aggregate there). ``copy.deepcopy`` walks every lot, entry and datetime,
and was a third of an order's CPU. These aggregates keep frozen dataclasses, tuples, strings,
numbers and datetimes inside dicts, lists and sets, and change state only by replacing values
or adding to and removing from those containers (never by changing a value inside one), so
copying the containers one level deep is a full copy for every purpose. An aggregate that
starts mutating nested values in place must stop using this.
"""

from __future__ import annotations

from typing import Any


class ContainerCopies:
    """``deepcopy`` as a copy of the instance dict with each dict, list and set copied."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        copy = object.__new__(type(self))
        copy.__dict__.update(
            {
                k: v.copy() if isinstance(v, dict | list | set) else v
                for k, v in self.__dict__.items()
            }
        )
        memo[id(self)] = copy
        return copy
