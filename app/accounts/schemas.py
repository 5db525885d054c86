"""Requests and answers of /accounts and /tokens."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from marshmallow import ValidationError, fields, validate

from app.accounts.models import ACCOUNT_TYPES
from app.accounts.tokens import PERMISSIONS, VISIBILITY_AREAS
from app.pagination import page_of
from app.schemas import StrictSchema

PASSWORD = validate.Length(min=8, max=128)


class AccountCreateSchema(StrictSchema):
    login = fields.Email(required=True, validate=validate.Length(max=128))
    password = fields.String(required=True, validate=PASSWORD, load_only=True)
    account_type = fields.String(load_default="user", validate=validate.OneOf(ACCOUNT_TYPES),
                                 metadata={"description": "user (open registration); advanced_user and admin "
                                                          "only when an admin sends the request"})
    description = fields.String(load_default="", validate=validate.Length(max=512))
    account_id = fields.UUID(load_default=None)


class AccountPatchSchema(StrictSchema):
    password = fields.String(validate=PASSWORD, load_only=True)
    description = fields.String(validate=validate.Length(max=512))


class AccountSchema(StrictSchema):
    account_id = fields.UUID()
    login = fields.String()
    account_type = fields.String()
    description = fields.String()
    create_time = fields.DateTime()


class AccountCreatedSchema(StrictSchema):
    account_id = fields.UUID()


# ---- tokens ------------------------------------------------------------
PermissionsSchema = StrictSchema.from_dict(
    {resource: fields.List(fields.String(validate=validate.OneOf(actions)))
     for resource, actions in PERMISSIONS.items()}, name="PermissionsSchema")


def _permissions(**kwargs: Any) -> fields.Nested:
    return fields.Nested(PermissionsSchema, metadata={"description": "the actions allowed on each resource"},
                         **kwargs)


def _in_future(value: datetime) -> None:
    # A token born expired is a client mistake that would surface later as a confusing 401.
    if value <= datetime.now(timezone.utc):
        raise ValidationError("must be in the future")


class TokenCreateSchema(StrictSchema):
    permissions = _permissions(required=True)
    description = fields.String(load_default="", validate=validate.Length(max=512))
    expiration_time = fields.AwareDateTime(load_default=None, validate=_in_future,
                                           metadata={"description": "ISO 8601 with offset, in the future"})
    visibility_area = fields.String(load_default="account", validate=validate.OneOf(VISIBILITY_AREAS))


class TokenPatchSchema(StrictSchema):
    permissions = _permissions()
    description = fields.String(validate=validate.Length(max=512))
    expiration_time = fields.AwareDateTime(allow_none=True)
    visibility_area = fields.String(validate=validate.OneOf(VISIBILITY_AREAS))


class TokenSchema(StrictSchema):
    token_id = fields.UUID()
    account_id = fields.UUID()
    permissions = _permissions()
    description = fields.String()
    expiration_time = fields.DateTime(allow_none=True)
    visibility_area = fields.String()
    create_time = fields.DateTime()


class TokenCreatedSchema(StrictSchema):
    token_id = fields.UUID()
    token = fields.String(metadata={"description": "the JWT; shown only once"})


TokenListSchema = page_of("tokens", TokenSchema, "TokenListSchema")
