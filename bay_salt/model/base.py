"""The one base of Bay's pydantic models: unknown fields are refused (a
typo in pillar is an error naming the field, never silently ignored)."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
