"""Refusals as RFC 9457 problem details: a status, a title, and what exactly was wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

PROBLEM_TYPE = "application/problem+json"


class FieldError(BaseModel):
    """One thing wrong with the request: where, and why."""

    field: str = Field(description="The attribute (ce-id) or payload path (customer.phone).")
    message: str
    type: str = Field(default="invalid", description="Pydantic's error type, or `invalid`.")


class ProblemBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] = Field(default_factory=list)


@dataclass
class Problem(Exception):  # noqa: N818 - an answer, not a failure of ours
    """A request refused with `status`; the app renders it as problem+json."""

    status: int
    title: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return ProblemBody(
            title=self.title, status=self.status, detail=self.detail, errors=self.errors
        ).model_dump(mode="json")
