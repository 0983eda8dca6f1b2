"""The UI's calls to the prediction API, with failures turned into sentences for people."""

from __future__ import annotations

from typing import Any, cast

import httpx

from tasador.core.errors import ServiceUnavailable

TIMEOUT_S = 15.0


class ServiceError(ServiceUnavailable):
    """The API could not answer; the message says why, in words (shown as is)."""


class InvalidListing(Exception):
    """The API refused the listing; ``fields`` maps each bad field to the reason."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(", ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def _call(base_url: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    try:
        response = httpx.request(method, f"{base_url}{path}", json=body, timeout=TIMEOUT_S)
    except httpx.TimeoutException:
        raise ServiceError(f"The prediction API at {base_url} did not answer in time.") from None
    except httpx.TransportError as exc:
        raise ServiceError(
            f"The prediction API at {base_url} is not reachable ({type(exc).__name__}). "
            "Is `tasador serve` running?"
        ) from None
    if response.status_code == 422:
        detail = response.json().get("detail", [])
        raise InvalidListing(
            {str(e["loc"][-1]): e["msg"] for e in detail if isinstance(e, dict) and e.get("loc")}
        )
    if response.status_code == 503:
        raise ServiceError(f"The prediction API cannot price yet: {response.json()['detail']}")
    if not response.is_success:
        raise ServiceError(f"The prediction API answered {response.status_code} to {path}.")
    return cast(dict[str, Any], response.json())


def predict(base_url: str, listing: dict[str, Any]) -> dict[str, Any]:
    """The prediction API's price for one listing; raises ServiceError or InvalidListing."""
    return _call(base_url, "POST", "/predict", listing)


def explain(base_url: str, listing: dict[str, Any]) -> dict[str, Any]:
    """The prediction API's SHAP explanation of one listing."""
    return _call(base_url, "POST", "/explain", listing)


def model(base_url: str) -> dict[str, Any]:
    """The prediction API's description of the model version serving."""
    return _call(base_url, "GET", "/model")
