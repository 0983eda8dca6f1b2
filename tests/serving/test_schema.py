"""The request schema: what a listing may hold, and how bad values are named."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydantic import ValidationError

from serving.schema import LISTING, Listing, listings_adapter


def errors_of(body: str) -> dict[tuple, str]:
    with pytest.raises(ValidationError) as caught:
        LISTING.validate_json(body)
    return {tuple(e["loc"]): e["type"] for e in caught.value.errors()}


def test_every_field_may_be_missing() -> None:
    assert LISTING.validate_json("{}") == Listing()
    assert LISTING.validate_json('{"bed": null, "city": null}') == Listing()


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("501", "00501"), ("78701.0", "78701"), ('"2134"', "02134"), ('"00501"', "00501")],
)
def test_zip_codes_get_their_leading_zeros_back(sent: str, kept: str) -> None:
    assert LISTING.validate_json(f'{{"zip_code": {sent}}}').zip_code == kept


@pytest.mark.parametrize(
    "sent", ["123456", '"12a45"', '"123456"', '" 2134"', "true", "-5", "7.5", '""']
)
def test_impossible_zip_codes_are_refused(sent: str) -> None:
    assert ("zip_code",) in errors_of(f'{{"zip_code": {sent}}}')


def test_ids_arrive_as_floats_like_the_data_api_sends_them() -> None:
    listing = LISTING.validate_json('{"brokered_by": 40618.0, "street": 1758218.0, "bed": 3.0}')
    assert (listing.brokered_by, listing.street, listing.bed) == (40618, 1758218, 3)


def test_json_types_must_match_the_schema() -> None:
    found = errors_of('{"bed": "3", "house_size": "1800", "prev_sold_date": 12, "bath": true}')
    assert set(found) == {("bed",), ("house_size",), ("prev_sold_date",), ("bath",)}


def test_text_is_stripped_like_the_model_strips_it() -> None:
    assert LISTING.validate_json('{"city": "  Austin "}').city == "Austin"
    assert ("city",) in errors_of('{"city": "   "}')
    assert ("city",) in errors_of('{"city": "' + "x" * 101 + '"}')


def test_each_bad_field_is_named() -> None:
    future = (date.today() + timedelta(days=2)).isoformat()
    found = errors_of(
        '{"bed": -1, "bath": 2.5, "house_size": 20, "acre_lot": -0.1, "status": "pending", '
        f'"prev_sold_date": "{future}", "city": "Aus\\u0000tin", "state": ""}}'
    )
    assert set(found) == {
        ("bed",),
        ("bath",),
        ("house_size",),
        ("acre_lot",),
        ("status",),
        ("prev_sold_date",),
        ("city",),
        ("state",),
    }


@pytest.mark.parametrize("sent", ['"2020-13-01"', '"yesterday"', '"1850-01-01"', "12"])
def test_dates_must_be_real_past_days(sent: str) -> None:
    assert ("prev_sold_date",) in errors_of(f'{{"prev_sold_date": {sent}}}')


def test_unknown_fields_are_refused_by_name() -> None:
    assert errors_of('{"house_sz": 1800}') == {("house_sz",): "extra_forbidden"}


@pytest.mark.parametrize("sent", ["350000", "null", '"350000"', "0"])
def test_price_is_refused_because_it_is_what_the_model_predicts(sent: str) -> None:
    with pytest.raises(ValidationError) as caught:
        LISTING.validate_json(f'{{"price": {sent}, "bed": 3}}')
    (error,) = caught.value.errors()
    assert error["loc"] == ("price",) and error["type"] == "target_field"
    assert error["msg"] == "price is what the model predicts: send the listing without it"
    assert "price" not in LISTING.validate_json('{"bed": 3}').model_dump()
    assert Listing.model_json_schema()["properties"]["price"]["not"] == {}


def test_lists_are_bounded() -> None:
    adapter = listings_adapter(3)
    assert len(adapter.validate_json("[{}, {}, {}]")) == 3
    for body in ("[]", "[{}, {}, {}, {}]"):
        with pytest.raises(ValidationError):
            adapter.validate_json(body)
