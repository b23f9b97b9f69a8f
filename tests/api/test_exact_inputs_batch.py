"""A batch answers per item: a malformed item is refused alone, and when a later round fails the
rounds committed before it are still in the answer (and stored)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

import application.orders.batch
from application.kernel import Caller
from application.orders import BatchItem, PlaceOrder
from tests.api.support import identity
from tests.api.test_exact_inputs import PROGRAM, an_order

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]
Placer = Callable[..., tuple[list[BatchItem], int]]


@pytest.fixture
async def program(client: Client, admin: dict[str, str]) -> None:
    response = await client.put("/v1/program", json=PROGRAM, headers=admin)
    assert response.status_code == 200, response.text


async def batch(client: Client, admin: dict[str, str], orders: list[Any]) -> list[dict[str, Any]]:
    response = await client.post("/v1/orders/batch", json={"orders": orders}, headers=admin)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    assert len(results) == len(orders)
    return results


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"amount": "1000"}, "invalid_type", "amount"),
        ({"amount": 1000.0}, "invalid_type", "amount"),
        ({"placed_at": "0001-01-01T00:00:00+14:00"}, "invalid_value", "placed_at"),
        ({"placed_at": "9999-12-31T23:59:59-14:00"}, "invalid_value", "placed_at"),
        ({"identity": identity("tmall_ouid", "a\x00b")}, "invalid_value", "identity.value"),
        ({"store_id": "s\x00"}, "invalid_value", "store_id"),
    ],
)
async def test_a_malformed_item_is_refused_alone_and_the_others_are_placed(
    client: Client,
    admin: dict[str, str],
    program: None,
    change: dict[str, Any],
    code: str,
    field: str,
) -> None:
    orders = [an_order(), an_order(**change), an_order()]
    results = await batch(client, admin, orders)
    assert [r["status"] for r in results] == [201, 400, 201], results
    assert results[1]["order_id"] == orders[1]["order_id"]
    assert results[1]["error"]["code"] == code, results[1]
    assert results[1]["error"]["field"] == field, results[1]


async def test_an_item_that_is_not_an_object_is_refused_alone(
    client: Client, admin: dict[str, str], program: None
) -> None:
    results = await batch(client, admin, [an_order(), 7, an_order()])
    assert [r["status"] for r in results] == [201, 400, 201], results
    assert results[1]["error"]["code"] == "invalid_type"


async def test_a_batch_with_lax_numbers_inside_items_is_still_answered_per_item(
    client: Client, admin: dict[str, str], program: None
) -> None:
    good, bad = an_order(), an_order()
    raw = json.dumps({"orders": [good, {**bad, "amount": "@@"}]}).replace('"@@"', "1e3")
    response = await client.post(
        "/v1/orders/batch",
        content=raw.encode(),
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == [201, 400]


def failing_on_round(monkeypatch: pytest.MonkeyPatch, n: int, error: Exception) -> None:
    """``place_round`` as it is, except that its ``n``-th call (one round each) raises."""
    real: Placer = application.orders.batch.place_round
    calls = 0

    def place(app: Any, cmds: Sequence[PlaceOrder], caller: Caller) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise error
        return real(app, cmds, caller)

    monkeypatch.setattr(application.orders.batch, "place_round", place)


async def test_when_a_later_round_fails_the_committed_rounds_are_answered_and_the_rest_is_503(
    client: Client, admin: dict[str, str], program: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    buyer = identity("tmall_ouid", "ou-rounds")
    # The same buyer three times: three rounds. Another buyer: in the first round.
    orders = [an_order(identity=buyer) for _ in range(3)] + [an_order()]
    failing_on_round(monkeypatch, 2, psycopg.OperationalError("connection lost"))

    response = await client.post("/v1/orders/batch", json={"orders": orders}, headers=admin)

    assert response.status_code == 200, response.text
    body = response.json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == [201, 503, 503, 201], body
    assert body["results"][1]["error"]["code"] == "service_unavailable"
    assert body["position"] > 0
    monkeypatch.undo()
    # The first round is stored (a replay), the rest was never placed (placed now).
    again = await batch(client, admin, orders)
    assert [r["status"] for r in again] == [200, 201, 201, 200], again


async def test_an_unexpected_failure_in_a_round_answers_its_items_500_and_keeps_the_others(
    client: Client, admin: dict[str, str], program: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    buyer = identity("tmall_ouid", "ou-bug")
    orders = [an_order(identity=buyer), an_order(identity=buyer)]
    failing_on_round(monkeypatch, 2, RuntimeError("a bug"))

    results = await batch(client, admin, orders)

    assert [r["status"] for r in results] == [201, 500], results
    assert results[1]["error"]["code"] == "internal_error"
