"""Benefits (权益) of a customer (docs/benefits.md): ``commands`` (GrantBenefit,
RevokeBenefitGrant, RedeemBenefit: 核销) and ``queries`` (what a customer holds, the
redemption history)."""
