"""The Blueprint every resource module uses: query strings are as strict as JSON bodies."""
from __future__ import annotations

import flask_smorest
from webargs.flaskparser import FlaskParser


class StrictParser(FlaskParser):
    # webargs ignores unknown query parameters by default; a misspelt filter must be an error,
    # not a silently unfiltered result. None defers to the schema (RAISE, see StrictSchema).
    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": None, "querystring": None}


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictParser()
