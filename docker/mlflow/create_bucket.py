#!/usr/bin/env python3
"""One-shot creation of MLflow's bucket on the stack's S3 store (service ``seaweedfs-init``).

Logged in with the store's admin key (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``), it waits
for the S3 API at ``S3_ENDPOINT_URL`` and creates ``MLFLOW_BUCKET`` unless it exists. Safe to
repeat: every ``docker compose up`` runs it, and MLflow waits for it to exit 0.
"""

from __future__ import annotations

import os
import sys
import time

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError

WAIT_S = float(os.environ.get("S3_WAIT_S", "120"))
ALREADY_THERE = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


def ensure_bucket(endpoint: str, bucket: str, wait_s: float = WAIT_S) -> bool:
    """Create ``bucket`` unless it exists; True when this call created it."""
    s3 = boto3.client("s3", endpoint_url=endpoint)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            # Some stores (and us-east-1) answer 200 to creating a bucket one already owns: ask.
            if _exists(s3, bucket):
                return False
            s3.create_bucket(Bucket=bucket)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ALREADY_THERE:
                return False
            retry = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
            if not retry or time.monotonic() >= deadline:
                raise
        except EndpointConnectionError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(2)


def _exists(s3: object, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchBucket", "NotFound"}:
            return False
        raise


def main() -> int:
    missing = [n for n in ("S3_ENDPOINT_URL", "MLFLOW_BUCKET") if not os.environ.get(n)]
    if missing:
        print(f"s3-init: set {', '.join(missing)}", file=sys.stderr)
        return 2
    bucket = os.environ["MLFLOW_BUCKET"]
    created = ensure_bucket(os.environ["S3_ENDPOINT_URL"], bucket)
    print(f"s3-init: bucket {bucket} {'created' if created else 'already there'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
