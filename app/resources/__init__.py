"""REST resources: one module per resource group, each a flask-smorest Blueprint of thin handlers."""
from __future__ import annotations

from flask_smorest import Api

from app.resources import accounts, buckets, images, objects, samples, system, tokens

BLUEPRINTS = [system.blp, accounts.blp, tokens.blp, images.blp, objects.blp, samples.faces_blp,
              samples.bodies_blp, buckets.blp]


def register(api: Api) -> None:
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)
