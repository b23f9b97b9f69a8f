"""The thin HTTP API (Litestar + msgspec): authentication, wire schemas, controllers, errors."""
