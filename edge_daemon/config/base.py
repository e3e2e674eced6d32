"""Shared pieces of every config section: strict frozen models and the names that end up in MQTT topics."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Names that end up in MQTT topics: no '/', '+', '#', spaces or control characters.
TopicName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
TopicPrefix = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
