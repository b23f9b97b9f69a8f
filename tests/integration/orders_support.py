"""Orders and refunds through the kernel, as a test's caller ``t``."""

from __future__ import annotations

from typing import Any

from application.kernel import Answer, Caller, execute
from application.orders import PlaceOrder, RefundOrder

CALLER = Caller("t")


def place(app: Any, cmd: PlaceOrder) -> Answer:
    return execute(app, cmd, CALLER)


def refund_now(app: Any, cmd: RefundOrder) -> Answer:
    return execute(app, cmd, CALLER)
