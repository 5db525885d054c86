"""REST resources: one module per resource group, each a flask-smorest Blueprint of thin handlers."""
from __future__ import annotations

from flask_smorest import Api

from app.resources import accounts, system, tokens

BLUEPRINTS = [system.blp, accounts.blp, tokens.blp]


def register(api: Api) -> None:
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)
