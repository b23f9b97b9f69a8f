"""Pure domain model: aggregates, value objects and policies. No I/O, no clock."""
