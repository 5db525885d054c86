"""REST resources: one module per resource group, each a flask-smorest Blueprint of thin handlers."""
from __future__ import annotations

from flask_smorest import Api

from app.resources import accounts, attributes, buckets, faces, images, lists, objects, samples, system, tokens
from app.resources import detector, iso, sdk
from app.resources import matcher, verifiers

BLUEPRINTS = [system.blp, accounts.blp, tokens.blp, images.blp, objects.blp, samples.faces_blp,
              samples.bodies_blp, buckets.blp, attributes.blp, faces.blp, lists.blp,
              sdk.blp, detector.blp, iso.blp, matcher.blp, verifiers.blp]


def register(api: Api) -> None:
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)
