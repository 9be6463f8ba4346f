"""REST routes of Web Push: the server's public key and the signed-in user's browser subscriptions.

``GET /api/v1/push/key`` gives the VAPID application server key the phone page subscribes with; ``POST
/api/v1/push/subscriptions`` stores the browser's subscription (``{"endpoint", "keys": {"p256dh", "auth"}}``, as
``PushSubscription.toJSON()`` gives it) for the caller, ``DELETE`` removes one of theirs. The bearer token or the
dashboard's session cookie (the page calls them with ``fetch``; the cookie is SameSite=Lax and the routes take a
JSON body only, so another site cannot call them with it). Sending is :mod:`gateway.notify.service`'s.
"""


from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.notify import push
from gateway.settings import Settings
from gateway.storage import Storage
from twin.people import User


class Keys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p256dh: str = Field(min_length=80, max_length=100)
    auth: str = Field(min_length=20, max_length=30)


class SubscriptionBody(BaseModel):
    model_config = ConfigDict(extra="ignore")  # browsers add expirationTime
    endpoint: str = Field(min_length=10, max_length=push.MAX_ENDPOINT)
    keys: Keys


class Unsubscribe(BaseModel):
    model_config = ConfigDict(extra="ignore")
    endpoint: str = Field(min_length=10, max_length=push.MAX_ENDPOINT)


def router(settings: Settings, storage: Callable[[], AbstractContextManager[Storage]],
           session_user: Callable[..., User]) -> APIRouter:
    r = APIRouter(prefix="/api/v1/push", tags=["push"])
    Me = Annotated[User, Depends(session_user)]

    @r.get("/key", summary="The VAPID public key to subscribe with (base64url)")
    def key(user: Me) -> dict[str, Any]:
        del user
        if not settings.notify.web_push:
            raise HTTPException(404, "Web Push is turned off on this server (notify.web_push)")
        with storage() as st:
            _vapid, public = push.keys(st.conn)
        return {"public_key": public}

    @r.post("/subscriptions", status_code=201, summary="Turn on notifications on this browser")
    def subscribe(body: SubscriptionBody, user: Me) -> dict[str, Any]:
        if not settings.notify.web_push:
            raise HTTPException(404, "Web Push is turned off on this server (notify.web_push)")
        try:
            push.check_subscription(body.endpoint, body.keys.p256dh, body.keys.auth,
                                    allow_http_loopback=settings.notify.push_allow_http)
        except push.BadSubscription as exc:
            raise HTTPException(422, str(exc)) from None
        with storage() as st:
            push.save_subscription(st.conn, user, body.endpoint, body.keys.p256dh, body.keys.auth)
        return {"endpoint": body.endpoint, "person": push.person_of(user)}

    @r.delete("/subscriptions", status_code=204, summary="Turn off notifications on this browser")
    def unsubscribe(body: Unsubscribe, user: Me) -> Response:
        try:
            push.check_endpoint(body.endpoint)
        except push.BadSubscription as exc:
            raise HTTPException(422, str(exc)) from None
        with storage() as st:
            if not push.delete_subscription(st.conn, user.username, body.endpoint):
                raise HTTPException(404, "no such subscription of yours")
        return Response(status_code=204)

    return r
