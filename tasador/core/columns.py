"""The realtor dataset's columns: one place for their names, order and clean types."""

from __future__ import annotations

# Column order of the course API's list-shaped rows and of the Kaggle CSV.
RAW_COLUMNS: tuple[str, ...] = (
    "brokered_by",
    "status",
    "price",
    "bed",
    "bath",
    "acre_lot",
    "street",
    "city",
    "state",
    "zip_code",
    "house_size",
    "prev_sold_date",
)

TARGET = "price"
NUMERIC_COLUMNS: tuple[str, ...] = ("bed", "bath", "acre_lot", "house_size")
CATEGORICAL_COLUMNS: tuple[str, ...] = ("status", "city", "state", "zip_code")
ID_COLUMNS: tuple[str, ...] = ("brokered_by", "street")
DATE_COLUMNS: tuple[str, ...] = ("prev_sold_date",)
STATUSES: tuple[str, ...] = ("for_sale", "ready_to_build", "sold")

# What kind of listing a row is, for the promotion's segment guard. A plot of land has no
# building: the realtor data leaves its bed, bath and house size blank (lot or not). A row with
# any of the three is a house; one impossible value blanked by cleaning does not make it land.
LAND = "land"
HOUSES = "houses"
BUILDING_COLUMNS: tuple[str, ...] = ("bed", "bath", "house_size")
