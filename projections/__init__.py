"""Read side: projections from the event log into query tables, and the worker that runs them."""
