from __future__ import annotations

from marshmallow import fields, validate
from webargs.fields import DelimitedList

from app.schemas.common import PaginationArgs, StrictSchema, page_of
from app.schemas.faces import MAX_FILTER_IDS, USER_DATA

LIST_ACTIONS = ("attach", "detach")


class ListCreateSchema(StrictSchema):
    user_data = fields.String(load_default="", validate=USER_DATA)


class ListPatchSchema(StrictSchema):
    user_data = fields.String(required=True, validate=USER_DATA)


class ListCreatedSchema(StrictSchema):
    list_id = fields.UUID()


class ListSchema(StrictSchema):
    list_id = fields.UUID()
    account_id = fields.UUID()
    user_data = fields.String()
    create_time = fields.DateTime()
    last_update_time = fields.DateTime()
    faces_count = fields.Integer()


class ListFilterArgs(StrictSchema):
    list_ids = DelimitedList(fields.UUID(), validate=validate.Length(max=MAX_FILTER_IDS),
                             metadata={"description": "comma-separated list ids"})
    user_data = fields.String(validate=USER_DATA, metadata={"description": "substring of user_data"})
    create_time__gte = fields.AwareDateTime()
    create_time__lt = fields.AwareDateTime()
    account_id = fields.UUID(metadata={"description": "advanced users: another account's lists"})


class ListListArgs(ListFilterArgs, PaginationArgs):
    pass


ListListSchema = page_of("lists", ListSchema, "ListListSchema")


class ListCountSchema(StrictSchema):
    lists_count = fields.Integer()


class ListFacesPatchSchema(StrictSchema):
    action = fields.String(required=True, validate=validate.OneOf(LIST_ACTIONS))
    face_ids = fields.List(fields.UUID(), required=True, validate=validate.Length(min=1),
                           metadata={"description": "at most `faces_batch_max` ids; all must be the "
                                                    "account's faces or nothing changes"})


class ListFacesChangedSchema(StrictSchema):
    list_id = fields.UUID()
    action = fields.String()
    changed = fields.Integer(metadata={"description": "faces actually attached or detached (repeats are no-ops)"})
