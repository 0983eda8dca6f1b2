"""What the OpenAPI document says that the routes' signatures cannot: their error answers and
the bodies /predict and /explain read themselves (serving.bodies), whose limit is the app's."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from serving.schema import Listing, Problem

Responses = dict[int | str, dict[str, Any]]

NOT_READY: Responses = {503: {"model": Problem, "description": "No model loaded yet (see detail)."}}
UNAUTHORIZED: Responses = {
    401: {"model": Problem, "description": "API key missing or wrong (when one is set)."}
}
LISTING_REFUSALS: Responses = {
    413: {"model": Problem, "description": "Body over serving_max_body_bytes."},
    422: {"description": "Invalid listing: each bad field is named in detail[].loc."},
}
BUSY: Responses = {
    429: {"model": Problem, "description": "Too many explanations at once: retry later."}
}


def listing_body(max_rows: int | None) -> dict[str, Any]:
    """One listing (``max_rows`` None) or also a list of up to ``max_rows``."""
    listing = {"$ref": "#/components/schemas/Listing"}
    many = {"type": "array", "items": listing, "minItems": 1, "maxItems": max_rows}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": listing if max_rows is None else {"oneOf": [listing, many]},
                "example": {"state": "Texas", "city": "Austin", "bed": 3, "house_size": 1800},
            }
        },
    }


def describe_bodies(app: FastAPI, max_rows: int) -> None:
    """Document the request bodies of /predict (up to ``max_rows`` listings) and /explain (one),
    and put the Listing schema they refer to into the components.

    Set on this app's copies of the routes, where FastAPI takes them as if the routes declared
    their bodies (the routers are shared; the limit is this app's)."""
    bodies = {"/predict": listing_body(max_rows), "/explain": listing_body(None)}
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path in bodies:
            route.openapi_extra = {"requestBody": bodies[route.path]}
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["Listing"] = Listing.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
