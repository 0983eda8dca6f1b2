"""The UI's calls to the prediction API, with failures turned into sentences for people."""

from __future__ import annotations

from typing import Any, cast

import httpx
from pydantic import SecretStr

from tasador.core.errors import ServiceUnavailable

TIMEOUT_S = 15.0


class ServiceError(ServiceUnavailable):
    """The API could not answer; the message says why, in words (shown as is)."""


class InvalidListing(Exception):
    """The API refused the listing; ``fields`` maps each bad field to the reason."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(", ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def _call(
    base_url: str, method: str, path: str, body: Any = None, api_key: str | None = None
) -> dict[str, Any]:
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        response = httpx.request(
            method, f"{base_url}{path}", json=body, headers=headers, timeout=TIMEOUT_S
        )
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
    if response.status_code == 401:
        raise ServiceError(
            f"The prediction API at {base_url} refused the UI's API key: set "
            "TASADOR_SERVING_API_KEY for the UI to the key serving was given."
        )
    if response.status_code == 429:
        raise ServiceError("The prediction API is busy explaining other listings: try again.")
    if response.status_code == 503:
        raise ServiceError(f"The prediction API cannot price yet: {response.json()['detail']}")
    if not response.is_success:
        raise ServiceError(f"The prediction API answered {response.status_code} to {path}.")
    return cast(dict[str, Any], response.json())


def predict(base_url: str, listing: dict[str, Any], api_key: str | None = None) -> dict[str, Any]:
    """The prediction API's price for one listing; raises ServiceError or InvalidListing.

    ``api_key``: sent as X-API-Key (serving's ``serving_api_key``), when serving has one."""
    return _call(base_url, "POST", "/predict", listing, api_key)


def explain(base_url: str, listing: dict[str, Any], api_key: str | None = None) -> dict[str, Any]:
    """The prediction API's SHAP explanation of one listing."""
    return _call(base_url, "POST", "/explain", listing, api_key)


def model(base_url: str, api_key: str | None = None) -> dict[str, Any]:
    """The prediction API's description of the model version serving."""
    return _call(base_url, "GET", "/model", api_key=api_key)


def api_key_of(secret: SecretStr | None) -> str | None:
    """The key to send, from the settings' ``serving_api_key`` (None: serving is open)."""
    return secret.get_secret_value() if secret is not None else None
