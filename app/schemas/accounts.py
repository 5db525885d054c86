from __future__ import annotations

from marshmallow import fields, validate

from app.models.accounts import ACCOUNT_TYPES
from app.schemas.common import StrictSchema

PASSWORD = validate.Length(min=8, max=128)


class AccountCreateSchema(StrictSchema):
    login = fields.Email(required=True, validate=validate.Length(max=128))
    password = fields.String(required=True, validate=PASSWORD, load_only=True)
    account_type = fields.String(load_default="user", validate=validate.OneOf(ACCOUNT_TYPES[:2]),
                                 metadata={"description": "admin accounts are made with `facegate create-admin`"})
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
