"""Pure domain model: aggregates, value objects and policies. No I/O, no clock."""

# Every aggregate module comes with the package: an event's explicit topic
# (``membercore.<Aggregate>.<Event>``) is registered when its class is defined, and any process
# must resolve every stored topic, whichever domain modules it happened to need itself.
from domain import (  # noqa: F401
    agent_network,
    benefits,
    customer,
    identity_claim,
    level_membership,
    merge,
    order,
    points_account,
    program,
    staff,
)
