"""Adapters: settings, PostgreSQL (embedded or external), the event store, tenancy, logging, CLI."""
