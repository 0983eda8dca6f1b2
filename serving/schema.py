"""What the prediction API accepts and answers.

A listing carries the raw fields of the realtor data (REALTOR.md), each optional because the
data has blanks in every column and the model is trained to handle them. Values are validated
where the data's own cleaning rules (``tasador.core.cleaning``) would call them impossible: a
request that breaks one gets a 422 naming every bad field, rather than a price computed from a
value the model never saw.

Unknown fields are **rejected** (422): a misspelt field (``house_sz``) would otherwise be
silently dropped and the price predicted as if the value were missing. ``price`` is refused
too, with a 422 of its own saying why: the price is what the model predicts, so a body carrying
one is a client sending whole dataset rows, which should drop the target rather than believe it
was used.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from tasador.core.cleaning import (
    ACRE_LOT_MAX,
    BATH_MAX,
    BED_MAX,
    HOUSE_SIZE_MAX,
    HOUSE_SIZE_MIN,
    OLDEST_SALE,
)
from tasador.core.columns import STATUSES

Status = Literal[STATUSES]  # type: ignore[valid-type]
ZIP_DIGITS = 5
MAX_TEXT = 100
_NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"


def _integral(value: Any) -> Any:
    """Counts and ids arrive as floats from the data API (3.0, 40618.0): take whole ones."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _zip_text(value: Any) -> Any:
    """Zip codes arrive as numbers with their leading zeros lost (12345.0, 501): restore them."""
    value = _integral(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**ZIP_DIGITS:
        return str(value).zfill(ZIP_DIGITS)
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,5}", value):
        return value.zfill(ZIP_DIGITS)
    return value


def _clean_text(value: Any) -> Any:
    """Refuse control characters and overlong text as sent, then strip like the model does."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT or re.search(r"[\x00-\x1f\x7f]", value):
            raise ValueError(f"text of at most {MAX_TEXT} characters, without control characters")
        return value.strip()
    return value


def _not_in_future(value: date) -> date:
    if value > date.today():
        raise ValueError("the previous sale cannot be in the future")
    return value


# The JSON Schema documents what is sent; the validators also strip text and pad zip codes.
Text = Annotated[
    str,
    BeforeValidator(_clean_text),
    Field(min_length=1),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": _NO_CONTROL_CHARS}
    ),
]
Count = Annotated[int, BeforeValidator(_integral)]
Id = Annotated[int, BeforeValidator(_integral), Field(ge=0, le=10**15)]
ZipCode = Annotated[
    str,
    BeforeValidator(_zip_text),
    Field(pattern=r"^[0-9]{5}$"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]{1,5}$"},
                {"type": "integer", "minimum": 0, "maximum": 10**ZIP_DIGITS - 1},
            ],
            "description": "Up to 5 digits; numbers and short codes get their leading zeros back.",
        }
    ),
]
SaleDate = Annotated[date, Field(ge=OLDEST_SALE.date()), AfterValidator(_not_in_future)]
PRICE_REFUSED = "price is what the model predicts: send the listing without it"


def _refuse_price(value: Any) -> Any:
    raise PydanticCustomError("target_field", PRICE_REFUSED)


# Any value, null included, is refused; the schema says so (``not: {}`` admits no value).
RefusedPrice = Annotated[
    Any,
    BeforeValidator(_refuse_price),
    WithJsonSchema({"not": {}, "description": PRICE_REFUSED}),
]


class Listing(BaseModel):
    """One listing's raw fields; every field may be missing (null or absent)."""

    # Strict: "3" is not a number and 12 is not a date (JSON types must match the schema).
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    brokered_by: Id | None = Field(default=None, description="Agency id (a number).")
    status: Status | None = None
    price: RefusedPrice = Field(default=None, exclude=True)
    bed: Count | None = Field(default=None, ge=0, le=BED_MAX)
    bath: Count | None = Field(default=None, ge=0, le=BATH_MAX)
    acre_lot: float | None = Field(default=None, ge=0, le=ACRE_LOT_MAX)
    street: Id | None = Field(default=None, description="Street id (a number).")
    city: Text | None = None
    state: Text | None = Field(default=None, description="Full name, e.g. Texas.")
    zip_code: ZipCode | None = None
    house_size: float | None = Field(
        default=None, ge=HOUSE_SIZE_MIN, le=HOUSE_SIZE_MAX, description="Square feet."
    )
    prev_sold_date: SaleDate | None = Field(default=None, description="YYYY-MM-DD, since 1900.")


class ModelRef(BaseModel):
    """Which model answered: registered name, version and alias."""

    name: str
    version: str
    alias: str


class Predictions(BaseModel):
    """Predicted prices and the model that made them."""

    predictions: list[float] = Field(description="Prices in dollars, in the order sent.")
    low: list[float] | None = Field(
        default=None,
        description="Each price's calibrated range, low end (null: the version has no ranges).",
    )
    high: list[float] | None = Field(default=None, description="Each range's high end.")
    coverage: float | None = Field(
        default=None, description="The share of listings such a range contains (nominal)."
    )
    model: ModelRef


class Contribution(BaseModel):
    """One feature's SHAP contribution to a listing's price."""

    feature: str = Field(description="An input field of the listing.")
    value: str | float | None = Field(description="The listing's value of it (null: missing).")
    contribution: float = Field(description="SHAP value, in log(price).")
    factor: float = Field(description="What it multiplies the price by: exp(contribution).")


class Explanation(BaseModel):
    """Why the model priced one listing as it did: prediction = base price x every factor."""

    prediction: float = Field(description="Price in dollars.")
    base_value: float = Field(description="The model's expected log(price) over its data.")
    base_price: float = Field(description="exp(base_value), in dollars.")
    contributions: list[Contribution] = Field(description="Largest effect first.")
    model: ModelRef


class Problem(BaseModel):
    """The body of every 503."""

    detail: str


def listings_adapter(max_rows: int) -> TypeAdapter[list[Listing]]:
    """A validator of a list of 1 to ``max_rows`` listings."""
    return TypeAdapter(Annotated[list[Listing], Field(min_length=1, max_length=max_rows)])


LISTING = TypeAdapter(Listing)
