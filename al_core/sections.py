"""The base of every params section (``params.yaml``): unknown keys refused, frozen, and YAML's
``true``/``false`` refused where a number is expected (pydantic would take ``batch_size: true`` as 1)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def _is_number_type(annotation: Any) -> bool:
    args = getattr(annotation, "__args__", None)
    if args:
        return any(_is_number_type(a) for a in args if a is not type(None))
    return annotation in (int, float)


class Section(BaseModel):
    """One ``params.yaml`` section: extra keys forbidden, frozen, no booleans for numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                value = data.get(name)
                if isinstance(value, bool) and _is_number_type(field.annotation):
                    raise ValueError(f"{name} = {str(value).lower()}: expected a number, not true/false")
        return data
