"""ObjectStore on an S3 bucket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import boto3
from botocore.exceptions import ClientError

from vtp.core.storage import content_type_for

if TYPE_CHECKING:
    from vtp.aws.pipeline import SourceObject


class S3Store:
    def __init__(self, bucket: str, client=None):
        self.bucket = bucket
        self.client = client or boto3.client("s3")

    def download(self, key: str, path: Path) -> Path:
        """Streamed to disk in ranged parts: the object never has to fit in memory."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(self.bucket, key, str(path))
        return path

    def upload(self, path: Path, key: str, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type or content_type_for(path)}
        self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra)

    def put_json(self, key: str, data: Any) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=json.dumps(data).encode(), ContentType="application/json"
        )

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=content_type or content_type_for(Path(key))
        )

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise KeyError(key) from None
            raise

    def get_json(self, key: str) -> Any:
        return json.loads(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def delete_prefix(self, prefix: str) -> int:
        return self.delete_keys(list(self.keys(prefix)))

    def delete_keys(self, keys: list[str]) -> int:
        """Delete these keys, 1,000 per request; a key that is not there is no error."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if response.get("Errors"):
                first = response["Errors"][0]
                raise RuntimeError(f"could not delete {len(response['Errors'])} objects, e.g. {first.get('Key')}: {first.get('Message')}")
        return len(keys)


def presigner(client) -> Callable[["SourceObject", int], tuple[str, dict[str, str]]]:
    """Presigned GETs of exactly the object version a job was started for.

    With versioning the URL names the version; without it, the ETag is pinned with a
    signed If-Match header (an overwrite then fails the read instead of mixing uploads).
    """

    def presign(obj: "SourceObject", lifetime_s: int) -> tuple[str, dict[str, str]]:
        params = {"Bucket": obj.bucket, "Key": obj.key}
        headers = {}
        if obj.versioned:
            params["VersionId"] = obj.version
        else:
            params["IfMatch"] = headers["If-Match"] = f'"{obj.version}"'
        return client.generate_presigned_url("get_object", Params=params, ExpiresIn=lifetime_s), headers

    return presign
