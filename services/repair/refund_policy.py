"""The express-refund policy (`deploy/refunds.yaml`) and the pure decision it drives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import BaseModel, ConfigDict, Field

from hub.core.settings import HubSettings, shipped
from hub.messages.common import Amount, RequestType

if TYPE_CHECKING:
    from decimal import Decimal


class ExpressRefundPolicy(BaseModel):
    """Which trusted customers' cases are refunded at pickup: request types, categories, limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    request_types: frozenset[RequestType] = frozenset({RequestType.RETURN, RequestType.EXCHANGE})
    max_amount: Amount | None = None
    """No express refund above this, whatever the category; None: the categories' limits only."""
    categories: dict[str, Amount] = Field(default_factory=dict)
    """The categories with express refunds, each with its own limit."""


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Whether a case is refunded at pickup, and why not when it is not."""

    eligible: bool
    reason: str


def express_refund_eligibility(
    policy: ExpressRefundPolicy,
    *,
    trusted_customer: bool,
    request_type: RequestType,
    category: str,
    amount: Decimal,
) -> Eligibility:
    """Refund at pickup only a trusted customer's listed request, category and amount."""
    limit = policy.categories.get(category)
    refusals = (
        (not policy.enabled, "express refunds are switched off"),
        (not trusted_customer, "the storefront does not mark the customer as trusted"),
        (request_type not in policy.request_types, f"no express refund for a {request_type}"),
        (limit is None, f"no express refund for category {category}"),
        (limit is not None and amount > limit, f"¥{amount} is above the {category} limit ¥{limit}"),
        (
            policy.max_amount is not None and amount > policy.max_amount,
            f"¥{amount} is above the overall limit ¥{policy.max_amount}",
        ),
    )
    for refused, reason in refusals:
        if refused:
            return Eligibility(eligible=False, reason=reason)
    return Eligibility(eligible=True, reason=f"trusted {request_type} of {category}, ¥{amount}")


def load_refund_policy(
    path: Path | None = None, settings: HubSettings | None = None
) -> ExpressRefundPolicy:
    """Read and validate the policy; a mistake names the field."""
    configured = (settings or HubSettings()).refund_policy_file
    source = path or (Path(configured) if configured else shipped("refunds.yaml"))
    return ExpressRefundPolicy.model_validate(yaml.safe_load(source.read_text(encoding="utf-8")))
