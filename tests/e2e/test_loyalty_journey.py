"""The loyalty engine over real HTTP against ``membercore serve`` with its live projection worker.

One member's journey: the program, orders by identity until gold, balances, levels and benefits,
a points redemption and its replay, a benefit redeemed up to its quota, a full refund that takes
the points and the level back, the profile read with ``min_position``, and the public feed.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.e2e.conftest import Tenant

ORDER_AMOUNT = 10000  # 100.00: 100 points and 100 growth per order
GOLD = 300  # three orders reach gold

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {
            "code": "points",
            "name": "积分",
            "earn": [{"per_amount": 100, "points": 1}],
            "expiry": {"mode": "rolling_days", "days": 365},
        },
        {
            "code": "growth",
            "name": "成长值",
            "redeemable": False,
            "earn": [{"per_amount": 100, "points": 1}],
        },
    ],
    "benefits": [
        {"code": "free_shipping", "name": "包邮", "quota": {"count": 1, "period": "month"}},
    ],
    "level_groups": [
        {
            "code": "consumer",
            "name": "会员等级",
            "basis": "growth",
            "window": {"mode": "rolling_days", "days": 365},
            "assessment": {"mode": "anniversary", "period": "year"},
            "levels": [
                {"code": "normal", "name": "普通", "threshold": 0},
                {"code": "gold", "name": "黄金", "threshold": GOLD, "benefits": ["free_shipping"]},
            ],
        }
    ],
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ok(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def balance(http: httpx.Client, key: str, customer_id: str, point_type: str) -> dict[str, Any]:
    body = ok(http.get(f"/v1/customers/{customer_id}/points", headers=bearer(key)), 200)
    found: dict[str, Any] = next(b for b in body["balances"] if b["point_type"] == point_type)
    return found


def test_member_earns_reaches_gold_redeems_and_is_refunded(
    e2e_tenant: Tenant, http: httpx.Client
) -> None:
    key = e2e_tenant.admin_key
    auth = bearer(key)

    program = ok(http.put("/v1/program", json=PROGRAM, headers=auth), 200)
    assert program["version"] >= 1
    feed_start = program["position"] - 1

    # Orders by identity: the first registers the buyer, the third crosses the gold threshold.
    identity = {"type": "tmall_ouid", "value": f"AAH{secrets.token_hex(6)}"}
    start = datetime.now(UTC) - timedelta(minutes=3)
    placed: list[dict[str, Any]] = []
    for n in range(3):
        order = {
            "order_id": f"T{n + 1}-{secrets.token_hex(4)}",
            "channel": "tmall",
            "identity": identity,
            "placed_at": (start + timedelta(minutes=n)).isoformat(),
            "amount": ORDER_AMOUNT,
            "lines": [
                {
                    "line_id": "1",
                    "sku": "SKU-RED-38",
                    "category": "shoes",
                    "quantity": 1,
                    "amount": 8000,
                },
                {"line_id": "2", "sku": "SKU-SOCK", "quantity": 2, "amount": 2000},
            ],
            "store_id": "tmall-flagship",
        }
        body = ok(http.post("/v1/orders", json=order, headers=auth), 201)
        assert sorted((p["point_type"], p["earned"]) for p in body["points"]) == [
            ("growth", 100),
            ("points", 100),
        ]
        placed.append({**order, **body})
    customer_id = placed[0]["customer_id"]
    assert {o["customer_id"] for o in placed} == {customer_id}
    # The first order puts the buyer on the ladder ("from": null), the third moves them up.
    assert [o["levels"] for o in placed] == [
        [{"group": "consumer", "from": None, "to": "normal"}],
        [],
        [{"group": "consumer", "from": "normal", "to": "gold"}],
    ]

    # The same order again is a replay of the first answer.
    first = placed[0]
    again = http.post(
        "/v1/orders",
        json={
            k: first[k]
            for k in ("order_id", "channel", "identity", "placed_at", "amount", "lines", "store_id")
        },
        headers=auth,
    )
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["position"] == first["position"]

    # Balances, levels and benefits.
    points = balance(http, key, customer_id, "points")
    assert (points["available"], points["pending"], points["held"]) == (300, 0, 0)
    assert sum(e["amount"] for e in points["expiring"]) == 300
    assert balance(http, key, customer_id, "growth")["available"] == 300

    levels = ok(http.get(f"/v1/customers/{customer_id}/levels", headers=auth), 200)
    [consumer] = levels["levels"]
    assert (consumer["group"], consumer["level"], consumer["level_name"]) == (
        "consumer",
        "gold",
        "黄金",
    )
    assert consumer["qualifying_value"] == 3 * 100
    assert consumer["next_level"] is None
    assert consumer["keep"]["threshold"] == GOLD

    benefits = ok(http.get(f"/v1/customers/{customer_id}/benefits", headers=auth), 200)
    [shipping] = benefits["benefits"]
    assert shipping["code"] == "free_shipping"
    assert shipping["sources"] == ["level:consumer:gold"]
    assert (shipping["quota"]["count"], shipping["quota"]["used"]) == (1, 0)

    # Redeem points; the same redemption again is a replay and spends nothing more.
    redemption = {"redemption_id": f"r-{secrets.token_hex(4)}", "amount": 50, "reason": "coupon"}
    route = f"/v1/customers/{customer_id}/points/points/redemptions"
    redeemed = ok(http.post(route, json=redemption, headers=auth), 201)
    assert (redeemed["amount"], redeemed["available"]) == (50, 250)
    assert sum(lot["amount"] for lot in redeemed["lots"]) == 50
    replay = http.post(route, json=redemption, headers=auth)
    assert replay.status_code == 200, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == http.post(route, json=redemption, headers=auth).content
    assert replay.json() == redeemed
    assert balance(http, key, customer_id, "points")["available"] == 250
    # Growth value only drives levels.
    refused = http.post(
        f"/v1/customers/{customer_id}/points/growth/redemptions",
        json={"redemption_id": f"g-{secrets.token_hex(4)}", "amount": 1},
        headers=auth,
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "points_not_redeemable")

    # Free shipping once a month: the second redemption is over the quota.
    benefit_route = f"/v1/customers/{customer_id}/benefits/free_shipping/redemptions"
    used = ok(
        http.post(benefit_route, json={"redemption_id": "fs-1", "note": "T3"}, headers=auth), 201
    )
    assert (used["source"], used["used"], used["remaining"]) == ("level:consumer:gold", 1, 0)
    over = http.post(benefit_route, json={"redemption_id": "fs-2"}, headers=auth)
    assert over.status_code == 409, over.text
    assert over.json()["code"] == "benefit_quota_exhausted"
    assert (over.json()["quota"], over.json()["period"]) == (1, "month")

    # Refund the first order in full: its points and growth are reversed, gold is lost at once.
    refund = {"refund_id": f"rf-{secrets.token_hex(4)}", "amount": ORDER_AMOUNT}
    refunded = ok(
        http.post(f"/v1/orders/tmall/{first['order_id']}/refunds", json=refund, headers=auth), 201
    )
    assert refunded["refunded_total"] == ORDER_AMOUNT
    reversed_ = {p["point_type"]: p for p in refunded["points"]}
    assert (reversed_["points"]["reversed"], reversed_["points"]["debt"]) == (100, 0)
    assert reversed_["growth"]["reversed"] == 100
    assert refunded["levels"] == [{"group": "consumer", "from": "gold", "to": "normal"}]
    more = http.post(
        f"/v1/orders/tmall/{first['order_id']}/refunds",
        json={"refund_id": f"rf-{secrets.token_hex(4)}", "amount": 1},
        headers=auth,
    )
    assert (more.status_code, more.json()["code"]) == (409, "refund_exceeds_order")
    assert balance(http, key, customer_id, "points")["available"] == 150
    assert balance(http, key, customer_id, "growth")["available"] == 200

    # The profile, read once its projections have applied the refund.
    profile = ok(
        http.get(
            f"/v1/customers/{customer_id}",
            params={"min_position": refunded["position"]},
            headers=auth,
        ),
        200,
    )
    assert profile["identities"] == [identity]
    stats = profile["stats"]
    assert stats["order_count"] == 3
    assert stats["total_spend"] == 2 * ORDER_AMOUNT
    assert stats["refund_count"] == 1
    assert stats["first_order_at"] is not None
    assert stats["last_order_at"] is not None
    assert stats["avg_order_value"] == 2 * ORDER_AMOUNT // 3
    assert stats["purchase_days"] >= 1
    assert profile["points"] == {"points": 150, "growth": 200}
    assert profile["levels"] == {"consumer": "normal"}

    # The public feed carries the orders, the upgrade and the refund.
    feed = ok(
        http.get(
            "/v1/events",
            params={
                "after": feed_start,
                "limit": 1000,
                "types": "order.placed,order.refunded,level.joined,level.upgraded,level.downgraded",
            },
            headers=auth,
        ),
        200,
    )
    mine = [i for i in feed["items"] if i["data"].get("customer_id") == customer_id]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for item in mine:
        by_type.setdefault(item["type"], []).append(item)
    assert sorted(by_type) == [
        "level.downgraded",
        "level.joined",
        "level.upgraded",
        "order.placed",
        "order.refunded",
    ]
    assert [i["data"]["order_id"] for i in by_type["order.placed"]] == [
        o["order_id"] for o in placed
    ]
    # Each level change is committed with the order or refund that caused it.
    [upgraded] = by_type["level.upgraded"]
    assert placed[1]["position"] < upgraded["position"] <= placed[2]["position"]
    assert (upgraded["data"]["group"], upgraded["data"]["to_level"]) == ("consumer", "gold")
    [refund_event] = by_type["order.refunded"]
    [downgraded] = by_type["level.downgraded"]
    assert refund_event["data"]["refund_id"] == refund["refund_id"]
    assert placed[2]["position"] < downgraded["position"] <= refunded["position"]
    assert (downgraded["data"]["to_level"], downgraded["data"]["reason"]) == ("normal", "refund")
