"""/ws: events as they happen, over a websocket; /notifications/deliveries: how webhooks fare."""
from __future__ import annotations

import queue
from typing import Any

from flask_sock import Sock
from marshmallow import fields, validate

from app.auth import current_principal, require
from app.blueprint import Blueprint
from app.events.schemas import ListOrText
from app.notifications import service
from app.schemas import StrictSchema

blp = Blueprint("notifications", __name__, description="Notifications: websocket subscribers and webhooks")
# How often a quiet socket checks whether its client left or fell behind.
POLL_S = 1.0


class SubscriptionArgs(StrictSchema):
    handler_ids = ListOrText(fields.UUID(), validate=validate.Length(max=100),
                             metadata={"description": "comma-separated handler ids"})
    sources = ListOrText(fields.String(validate=validate.Length(max=128)), validate=validate.Length(max=100),
                         metadata={"description": "comma-separated sources"})
    tags = ListOrText(fields.String(validate=validate.Length(max=36)), validate=validate.Length(max=100),
                      metadata={"description": "comma-separated tags; an event with any of them"})
    similarity__gte = fields.Float(validate=validate.Range(0, 1), metadata={"description": "best match at least"})
    similarity__lte = fields.Float(validate=validate.Range(0, 1), metadata={"description": "best match at most"})
    account_id = fields.UUID(metadata={"description": "advanced users: another account's events"})
    since_seq = fields.Integer(validate=validate.Range(min=0),
                               metadata={"description": "the last seq received before a reconnect: the events "
                                                        "after it come first, then the live ones"})


class DeliveryCountsSchema(StrictSchema):
    pending = fields.Integer(metadata={"description": "waiting for a first or a further try"})
    delivered = fields.Integer()
    failed = fields.Integer(metadata={"description": "given up after callback_max_attempts tries"})
    failed_attempts = fields.Integer(metadata={"description": "tries that did not get a 2xx answer"})


class _Capture:
    """Stands in for a blueprint so flask-sock hands over its websocket view instead of routing it:
    the handshake must come after this API's own argument and permission checks, which answer
    plain HTTP errors, and flask-sock's route would shake hands before any of them ran."""

    view: Any = None

    def route(self, path: str, **_: Any) -> Any:
        return lambda view: setattr(self, "view", view)


_handshake = _Capture()


@blp.route("/ws", methods=["GET"], websocket=True)
@blp.arguments(SubscriptionArgs, location="query")
@blp.doc(responses={"101": {"description": "Switching Protocols: each message is `{\"seq\": n, \"event\": "
                                           "{...}}`"}})
@require("event", "view")
def subscribe(args: dict[str, Any]) -> Any:
    """Events of handlers whose callbacks include `luna-ws-notification`, as they are made, over a
    websocket; the query filters which. A subscriber that reconnects with `since_seq` (the last
    `seq` it got) first receives what it missed. A subscriber that falls `ws_queue_max` events
    behind is closed (code 1008) so it cannot stall the others."""
    principal = current_principal()
    subscriber = service.Subscriber(principal.read_scope(args.get("account_id")), args)
    return _handshake.view(subscriber)


@Sock().route("/ws", bp=_handshake)
def _serve(ws: Any, subscriber: service.Subscriber) -> None:
    service.hub.subscribe(subscriber)  # first, so nothing falls between the replay and the live events
    sent = subscriber.filters.get("since_seq")
    try:
        if sent is not None:
            for seq, text in service.missed(subscriber, sent):
                ws.send(text)
                sent = seq
        while ws.connected and not subscriber.too_slow:
            try:
                seq, text = subscriber.queue.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if sent is None or seq > sent:  # what the replay sent already comes live once more
                ws.send(text)
                sent = seq
        if subscriber.too_slow:
            ws.close(reason=1008, message="too slow: fell ws_queue_max events behind")
    finally:
        service.hub.unsubscribe(subscriber)


@blp.route("/notifications/deliveries", methods=["GET"])
@blp.response(200, DeliveryCountsSchema)
@require("event", "view")
def delivery_counts() -> dict[str, int]:
    """The account's http callback deliveries by state, and their failed tries."""
    return service.delivery_counts(current_principal().scope)


BLUEPRINTS = [blp]
