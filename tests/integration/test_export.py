"""The access-request export (GET /v1/customers/{id}/export) holds everything held about the
person: profile, tags and events, and their points, orders with refunds, levels and benefits;
after erasure the money and points facts stay and no personal value does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec

from application.benefits.commands import GrantBenefit, RedeemBenefit
from application.customers import AddTags
from application.kernel import Caller, Outcome, execute
from application.orders import PlaceOrder, RefundOrder
from application.points.commands import RedeemPoints
from application.privacy import EraseCustomer, export_customer
from application.program import define_program
from infrastructure.tenancy import Tenant
from tests.integration.orders_support import place, refund_now
from tests.integration.support import register
from tests.integration.test_privacy import CTX, Person

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "attributes": [{"code": "city", "type": "string"}],
    "point_types": [{"code": "points", "earn": [{"per_amount": 100, "points": 1}]}],
    "level_groups": [
        {
            "code": "consumer",
            "role": "consumer",
            "basis": "spend",
            "window": {"mode": "rolling_days", "days": 365},
            "assessment": {"mode": "calendar", "period": "quarter"},
            "levels": [
                {"code": "normal", "threshold": 0},
                {"code": "gold", "threshold": 100000},
            ],
        }
    ],
    "benefits": [
        {"code": "free_shipping", "name": "包邮", "quota": {"count": 2, "period": "month"}}
    ],
}


def shop(tenant: Tenant, person: Person) -> Any:
    """A customer with orders (one partly refunded), a redemption, a benefit used, and tags;
    another customer's order on the side."""
    app = tenant.app
    define_program(app, PROGRAM, CTX.actor)
    customer_id = person.register(tenant)
    person.live_a_little(tenant, customer_id)
    other = register(tenant, ("member_no", f"other-{person.token}")).customer_id
    placed = app.clock() - timedelta(minutes=5)
    assert (
        place(app, PlaceOrder("A1", "tmall", placed, 120000, customer_id)).outcome
        is Outcome.CREATED
    )
    assert (
        place(app, PlaceOrder("A2", "pos", placed, 30000, customer_id)).outcome is Outcome.CREATED
    )
    assert place(app, PlaceOrder("B1", "pos", placed, 50000, other)).outcome is Outcome.CREATED
    assert refund_now(app, RefundOrder("tmall", "A1", "r1", 20000)).outcome is Outcome.CREATED
    execute(
        app,
        RedeemPoints(customer_id, "points", redemption_id="x1", amount=100, reason="coupon"),
        Caller(CTX.actor),
    )
    execute(app, GrantBenefit(customer_id, "g1", "free_shipping", "vip"), Caller(CTX.actor))
    execute(app, RedeemBenefit(customer_id, "free_shipping", "b1"), Caller(CTX.actor))
    execute(app, AddTags(customer_id, ["vip", "tea_lover"]), Caller(CTX.actor))
    return customer_id


def check_money_facts(document: dict[str, Any]) -> None:
    """What the shopping left, as the export shows it (the same before and after erasure)."""
    (points,) = document["points"]
    assert points["point_type"] == "points"
    assert points["available"] == 1200 + 300 - 200 - 100
    kinds = [e["kind"] for e in points["entries"]]
    assert kinds.count("earned") == 2
    assert {"reversed", "redeemed"} <= set(kinds)
    orders = {(o["channel"], o["order_id"]): o for o in document["orders"]}
    assert set(orders) == {("tmall", "A1"), ("pos", "A2")}
    assert orders["tmall", "A1"]["amount"] == 120000
    assert [(r["refund_id"], r["amount"]) for r in orders["tmall", "A1"]["refunds"]] == [
        ("r1", 20000)
    ]
    assert orders["pos", "A2"]["refunds"] == []
    (level,) = document["levels"]
    assert (level["group"], level["level"]) == ("consumer", "gold")
    benefits = document["benefits"]
    assert [g["grant_id"] for g in benefits["grants"]] == ["g1"]
    assert [r["redemption_id"] for r in benefits["redemptions"]] == ["b1"]


def test_export_holds_points_orders_with_refunds_levels_benefits_and_tags(
    tenant: Tenant,
) -> None:
    person = Person("Export")
    customer_id = shop(tenant, person)

    document = export_customer(tenant.app, customer_id).document

    check_money_facts(document)
    assert [h["code"] for h in document["benefits"]["held"]] == ["free_shipping"]
    assert document["customer"]["tags"] == ["tea_lover", "vip"]
    assert document["customer"]["profile"]["name"] == person.renamed
    assert "TagsAdded" in [e["type"] for e in document["events"]]


def test_export_after_erasure_keeps_money_facts_and_tags_but_no_personal_value(
    tenant: Tenant,
) -> None:
    person = Person("Erased")
    customer_id = shop(tenant, person)

    execute(tenant.app, EraseCustomer(customer_id, "request"), Caller(CTX.actor))
    document = export_customer(tenant.app, customer_id).document

    check_money_facts(document)
    assert document["benefits"]["held"] == []  # an erased customer holds nothing any more
    assert document["customer"]["tags"] == ["tea_lover", "vip"]
    text = msgspec.json.encode(document).decode()
    assert [v for v in person.values() if v in text] == []
