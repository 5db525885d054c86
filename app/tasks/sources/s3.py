"""``s3``: objects of an S3-like bucket under a key prefix, read with boto3."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from marshmallow import fields, validate

from app.schemas import StrictSchema
from app.tasks.sources import (
    FileEntry,
    FileUnreadable,
    Source,
    SourceSchema,
    auth_failed,
    max_file_bytes,
    not_found,
    register,
    too_large,
    unavailable,
)

WHAT = "S3 storage"
_SIGNATURES = {"s3v2": "s3", "s3v4": "s3v4"}
_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken",
               "AuthorizationHeaderMalformed", "403"}
_MISSING_CODES = {"NoSuchBucket", "404", "PermanentRedirect", "InvalidBucketName"}


class S3AuthorizationSchema(StrictSchema):
    s3_key = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256),
                           metadata={"description": "access key; encrypted at rest, never shown"})
    s3_secret_key = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256),
                                  metadata={"description": "secret key; encrypted at rest, never shown"})


class S3Schema(SourceSchema):
    bucket_name = fields.String(required=True, validate=validate.Length(min=1, max=1024),
                                metadata={"description": "bucket name, access point ARN or outpost ARN"})
    endpoint = fields.String(validate=validate.Regexp(r"^https?://"), metadata={"description": "storage endpoint"})
    region = fields.String(validate=validate.Length(min=1, max=64))
    authorization = fields.Nested(S3AuthorizationSchema, required=True)
    signature_version = fields.String(load_default="s3v4", validate=validate.OneOf(sorted(_SIGNATURES)))
    recursive = fields.Boolean(load_default=False, metadata={"description": "also the keys below the prefix's folders"})
    save_origin = fields.Boolean(load_default=False, metadata={"description": "store each image as its event's "
                                                                             "origin image"})


@lru_cache(maxsize=16)
def _client(endpoint: str | None, region: str, key: str, secret: str, signature: str, timeout: float) -> Any:
    """A boto3 client per storage and credentials, kept by the process: making one costs more CPU
    than reading a part's images. Clients are thread-safe; making one from the shared default
    session is not, hence a session of its own."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=key, aws_secret_access_key=secret,
        config=Config(signature_version=_SIGNATURES[signature], s3={"addressing_style": "path" if endpoint else "auto"},
                      retries={"mode": "standard", "total_max_attempts": 2},
                      connect_timeout=timeout, read_timeout=max(30.0, timeout)))


@register
class S3Source(Source):
    name = "s3"
    schema = S3Schema
    secrets = ("authorization.s3_key", "authorization.s3_secret_key")

    @classmethod
    def enabled(cls) -> bool:
        try:
            import boto3  # noqa: F401
        except ImportError:
            return False
        return True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        auth = self.config["authorization"]
        self.client = _client(self.config.get("endpoint"), self.config.get("region") or "us-east-1",
                              auth["s3_key"], auth["s3_secret_key"], self.config["signature_version"], self.timeout)

    def _error(self, exc: Exception) -> Exception:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _AUTH_CODES:
                return auth_failed(WHAT)
            if code in _MISSING_CODES:
                return not_found(WHAT, "bucket")
        return unavailable(WHAT)

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.list_objects_v2(Bucket=self.config["bucket_name"], Prefix=self.config.get("prefix", ""),
                                        MaxKeys=1)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc) from None

    def listing(self) -> list[FileEntry]:
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = self.config.get("prefix", "")
        args = {"Bucket": self.config["bucket_name"], "Prefix": prefix}
        if not self.config["recursive"]:
            args["Delimiter"] = "/"
        try:
            return [FileEntry(item["Key"], item.get("Size"))
                    for page in self.client.get_paginator("list_objects_v2").paginate(**args)
                    for item in page.get("Contents", ()) if not item["Key"].endswith("/")]
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc) from None

    def selected(self, name: str, prefix: str, postfix: str) -> bool:
        return name.startswith(prefix) and name.endswith(postfix)  # S3 prefixes are prefixes of the key

    def read(self, name: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.get_object(Bucket=self.config["bucket_name"], Key=name)
            if answer.get("ContentLength", 0) > max_file_bytes():
                answer["Body"].close()
                raise too_large(name)
            return answer["Body"].read()
        except ClientError:
            raise FileUnreadable(f"file '{name}' could not be read (gone, or not readable)") from None
        except BotoCoreError:
            raise FileUnreadable(f"file '{name}' could not be read: the connection failed") from None

