"""The REST API under ``/api/v1`` (FastAPI): login, the worker's inbox and actions, operator views,
the resident's rating link, the knowledge base and KPIs. Does I/O (PostgreSQL through a small pool).

Build it with :func:`create_api` and serve it with uvicorn, or mount it in the composition root next to
the dashboard; the spec is at ``/api/v1/openapi.json``. Every route path starts with ``/api/v1``, so
mount the app at the server root. Bad input never ends in a 500: illegal transitions and stale
versions are 409, someone else's ticket 403, missing/expired tokens 401, oversized photos 413, wrong
content types 415, malformed JSON 400, invalid fields 422, an unreachable database 503 (at once, with a
generic message in English and Chinese; what went wrong goes only to the server log), a throttled or
locked-out login 429 and a login while every password-hashing slot is busy 503 (both with
``Retry-After``; see :class:`gateway.api.auth.LoginGuard`).

Every response carries ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer`` and a Content-Security-Policy (``default-src 'none'`` for data; the
rating page allows only its own script, by nonce).

No ``from __future__ import annotations`` here: FastAPI reads the route signatures' annotations at
run time, and the dependency aliases (``Svc``, ``Me``) are local to :func:`create_api`.
"""

import contextlib
import html
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, FastAPI, File, Form, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import InterfaceError, OperationalError
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api import hotspots as hotspots_api
from gateway.api import push as push_api
from gateway.api.auth import AuthError, InvalidToken, LoginGuard, LoginRefused, TokenExpired, Users
from gateway.api.fieldwork import add_fieldwork_routes
from gateway.api.pool import StoragePool, pool_for
from gateway.api.sign_in_log import record_sign_in
from gateway.api.text import Text, storable
from gateway.assistant import api as assistant_api
from gateway.assistant import public as assistant_public
from gateway.care import api as care_api
from gateway.outcomes import api as outcomes_api
from gateway.patrols import api as patrols_api
from gateway.ratelimit import EveryFewSeconds
from gateway.reports import api as reports_api
from gateway.reports import public as reports_public
from gateway.reports.checks import report_rate_problem
from gateway.settings import Settings
from gateway.storage import StorageError
from gateway.tickets.service import (
    API_PREFIX,
    PHOTO_TYPES,
    Forbidden,
    Photo,
    PhotoRejected,
    Publish,
    ReadingsFn,
    SnapshotFn,
    TicketConflict,
    TicketNotFound,
    TicketService,
    kpi_csv,
)
from gateway.tickets.views import use_local_knowledge
from gateway.web.live import HubUnavailable, LiveHub
from gateway.web.public_limits import SharedLimiter
from twin import tickets as tk
from twin.community import Community
from twin.people import Role, User
from twin.tickets import InvalidInput, Priority, TicketError, TicketState

MAX_JSON_BYTES = 64 * 1024
LEAVE_ADMISSION = "gridtwin.leave_admission"  # ASGI scope key: see Admission
SYNC_THREADS = 16  # requests handled at once; the server gives FastAPI's thread pool this many threads
UNAVAILABLE = ("the service is temporarily unavailable: please try again shortly", "服务暂时不可用，请稍后再试")
UNAVAILABLE_RETRY_S = 5
SESSION_COOKIE = "gridtwin_session"  # the dashboard's session (viz.shell.SESSION_COOKIE): the stream accepts it
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'none'")
log = logging.getLogger(__name__)


Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
TicketId = Annotated[int, Path(ge=1, le=2**62, description="ticket id")]
Version = Annotated[int | None, Field(default=None, ge=1, le=2**31 - 1,
                                      description="the version you saw; a stale one is refused (409)")]
RateToken = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{8,64}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(_Body):
    username: Annotated[Text, Field(min_length=1, max_length=64)]
    password: Annotated[Text, Field(min_length=1, max_length=1024)]


class NoteBody(_Body):
    note: Annotated[Text, Field(max_length=4000)] = ""
    version: Version = None


CloseReason = Literal["false_alarm", "device_fault", "other"]


class ResolveBody(_Body):
    note: Annotated[Text, Field(min_length=1, max_length=4000, description="what was done")]
    reason: CloseReason | None = Field(
        default=None, description="required while a life-safety alarm of the incident is still active (else 409): "
                                  "误报 false_alarm, 设备故障 device_fault, 其他 other (with reason_note)")
    reason_note: Annotated[Text | None, Field(max_length=1000)] = None
    version: Version = None


class ReasonBody(_Body):
    reason: Annotated[Text, Field(min_length=1, max_length=1000)]
    version: Version = None


class CancelBody(ReasonBody):
    code: CloseReason | None = Field(
        default=None, description="what it was; required while a life-safety alarm of the incident is active")


class ReassignBody(_Body):
    assignee: Id = Field(description="worker, backup or supervisor id from the community file")
    reason: Annotated[Text, Field(min_length=1, max_length=1000)]
    version: Version = None


class ManualTicket(_Body):
    title: Annotated[Text, Field(min_length=1, max_length=200)]
    description: Annotated[Text, Field(max_length=4000)] = ""
    priority: Priority = Priority.GENERAL
    category: Literal["fire", "elevator", "gas", "water", "care", "environment", "other"] = "other"
    community: Id | None = None
    building: Id | None = None
    floor: Annotated[int | None, Field(ge=-10, le=200)] = None
    unit: Annotated[Text | None, Field(max_length=64)] = None
    contact: Annotated[Text | None, Field(max_length=64, description="the resident's phone")] = None


class Rating(_Body):
    rating: Annotated[int, Field(ge=1, le=5, description="1 very unsatisfied .. 5 very satisfied")]
    comment: Annotated[Text | None, Field(max_length=1000)] = None


class NewUser(_Body):
    username: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.@-]{1,63}$")]
    password: Annotated[Text, Field(min_length=8, max_length=1024)]
    role: Role
    display_name: Annotated[Text | None, Field(max_length=100)] = None
    grids: list[Id] = Field(default=[], max_length=50)
    worker_id: Id | None = None
    update: bool = False


def _user_json(u: User) -> dict[str, Any]:
    return {"username": u.username, "display_name": u.display_name, "role": u.role.value, "grids": list(u.grids),
            "worker_id": u.worker_id}


# -- the app --------------------------------------------------------------------------------------------


def create_api(settings: Settings, communities: Community | Iterable[Community], *,
               pool: StoragePool | None = None, db_url: str | None = None,
               schema: str | None = None, publish: Publish | None = None, snapshot: SnapshotFn | None = None,
               readings: ReadingsFn | None = None, clock: Callable[[], datetime] | None = None,
               pool_size: int | None = None, login_guard: LoginGuard | None = None,
               live: LiveHub | None = None) -> FastAPI:
    """The FastAPI app of the REST API (routes under ``/api/v1``).

    Connections: from ``pool`` (shared with the dashboard; its owner closes it), else from a pool of
    this app on ``db_url`` / ``schema`` (default: the settings' ``db.url`` / ``db.schema``) of at most
    ``pool_size`` (default ``db.pool_size``) connections; call ``app.state.close()`` at shutdown.
    ``publish(topic, payload, qos)`` delivers tickets to workers' MQTT topics, ``snapshot``
    renders the 3D picture of a manual report, ``readings(community, device)`` gives latest values
    (default: from the database), ``clock`` is the time source (tests). ``login_guard`` throttles logins
    (share one with the dashboard's sign-in when both run in one process; default: a new one).
    ``live``: the process's :class:`gateway.web.live.LiveHub`; with one, ``GET /api/v1/stream`` pushes
    alarms and tickets as Server-Sent Events (without one the route does not exist).
    """
    use_local_knowledge(settings.knowledge.dirs)  # the assistant's and tickets' knowledge: a broken one stops here
    cs = [communities] if isinstance(communities, Community) else list(communities)
    now = clock or (lambda: datetime.now(UTC))
    owned = pool is None  # a shared pool is closed by its owner
    if pool is None:
        url = db_url or settings.db.url
        if url is None:
            raise ValueError("create_api needs a pool, db_url or settings.db.url")
        pool = pool_for(settings, url, schema=schema, max_size=pool_size)
    ttl = timedelta(minutes=settings.api.token_ttl_min)
    max_body = settings.tickets.photo_max_bytes + 64 * 1024

    app = FastAPI(title="gridtwin API", version="1",
                  description="Dispatch tickets for community grid workers (网格员): inbox, actions, ratings, KPIs.",
                  openapi_url=f"{API_PREFIX}/openapi.json", docs_url=f"{API_PREFIX}/docs", redoc_url=None)
    app.state.close = pool.close if owned else (lambda: None)
    app.state.pool = pool
    guard = login_guard or LoginGuard()
    app.state.login_guard = guard
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Admission, limit=SYNC_THREADS)
    bearer = HTTPBearer(auto_error=False, description="token from POST /api/v1/auth/login")

    db = pool

    def service() -> Iterator[TicketService]:
        with db.storage() as st:
            yield TicketService(st, settings, cs, publish=publish, snapshot=snapshot, readings=readings, clock=now)

    Svc = Annotated[TicketService, Depends(service)]

    def bearer_token(creds: HTTPAuthorizationCredentials | None) -> str:
        if creds is None or creds.scheme.lower() != "bearer":
            raise InvalidToken("missing bearer token: log in at POST /api/v1/auth/login")
        if len(creds.credentials) > 200:
            raise InvalidToken("malformed token")
        return creds.credentials

    def current_user(svc: Svc, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> User:
        return Users(svc.conn).user_for_token(bearer_token(creds), now())

    Me = Annotated[User, Depends(current_user)]

    def need(user: User, *roles: Role) -> None:
        if user.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(r.value for r in roles)}; you are {user.role.value}")

    def ticket_json(svc: TicketService, t: tk.Ticket, user: User) -> dict[str, Any]:
        return {**svc.view(t, private=user.sees_everything()), "timeline": svc.timeline(t.id)}

    # -- errors -----------------------------------------------------------------------------------------

    def err(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return err(400, "malformed JSON: " + "; ".join(str(e.get("msg", "")) for e in errors)[:300])
        parts = []
        for e in errors[:10]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts),
                             "errors": [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
                                        for e in errors[:10]]}, status_code=422)

    @app.exception_handler(InvalidInput)
    async def _bad_input(_r: Request, exc: InvalidInput) -> JSONResponse:
        return err(422, str(exc))

    @app.exception_handler(TicketError)
    async def _state(_r: Request, exc: TicketError) -> JSONResponse:
        if isinstance(exc, tk.AlarmsStillActive):
            return JSONResponse({"detail": str(exc), "active_alarms": list(exc.alarms),
                                 "reasons": tk.CLOSE_REASONS}, status_code=409)
        return err(409, str(exc))

    @app.exception_handler(TicketConflict)
    async def _conflict(_r: Request, exc: TicketConflict) -> JSONResponse:
        return err(409, str(exc))

    @app.exception_handler(TicketNotFound)
    async def _missing(_r: Request, exc: TicketNotFound) -> JSONResponse:
        return err(404, str(exc))

    @app.exception_handler(Forbidden)
    async def _forbidden(_r: Request, exc: Forbidden) -> JSONResponse:
        return err(403, str(exc))

    @app.exception_handler(PhotoRejected)
    async def _photo(_r: Request, exc: PhotoRejected) -> JSONResponse:
        return err(exc.status, str(exc))

    @app.exception_handler(AuthError)
    async def _auth(_r: Request, exc: AuthError) -> JSONResponse:
        if isinstance(exc, InvalidToken | TokenExpired):
            return err(401, str(exc), {"WWW-Authenticate": "Bearer"})
        return err(422, str(exc))

    @app.exception_handler(LoginRefused)
    async def _refused(_r: Request, exc: LoginRefused) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "detail_zh": exc.message_zh, "reason": exc.reason,
                             "retry_after_s": exc.retry_after_s, "retry_at": exc.retry_at.isoformat()},
                            status_code=exc.status, headers={"Retry-After": str(exc.retry_after_s)})

    down_log = EveryFewSeconds(10.0)

    async def _db(request: Request, exc: Exception) -> JSONResponse:
        if down_log.due():
            log.warning("API %s %s answered 503: %s: %s", request.method, request.url.path, type(exc).__name__,
                        str(exc).splitlines()[0] if str(exc) else "")
        return JSONResponse({"detail": UNAVAILABLE[0], "detail_zh": UNAVAILABLE[1]}, status_code=503,
                            headers={"Retry-After": str(UNAVAILABLE_RETRY_S)})

    # a broken pooled connection raises psycopg's errors directly: the same 503, not a 500
    for exc_type in (StorageError, OperationalError, InterfaceError):
        app.add_exception_handler(exc_type, _db)

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Callable[[Request], Any]) -> Response:
        length = request.headers.get("content-length")
        if request.method in ("POST", "PUT", "PATCH") and length is not None:
            if not length.isdigit():
                return err(400, "bad Content-Length header")
            multipart = request.headers.get("content-type", "").startswith("multipart/")
            limit = max_body if multipart else MAX_JSON_BYTES
            if int(length) > limit:
                return err(413, f"request body of {length} bytes is larger than the limit of {limit} bytes")
        response: Response = await call_next(request)
        return response

    r = APIRouter(prefix=API_PREFIX)

    # -- auth -----------------------------------------------------------------------------------------------

    @r.post("/auth/login", tags=["auth"], summary="Log in; returns an expiring bearer token",
            responses={401: {"description": "wrong username or password"},
                       429: {"description": "too many attempts, or the account is locked (see Retry-After)"},
                       503: {"description": "sign-in is busy or the database is unavailable (see Retry-After)"}})
    def login(body: Login, request: Request) -> JSONResponse:
        client = request.client.host if request.client else ""

        def check() -> tuple[User, str, datetime] | None:
            with db.storage() as st:
                users = Users(st.conn)
                user = users.authenticate(body.username, body.password)
                record_sign_in(st.conn, body.username, user is not None, client, "api")
                if user is None:
                    return None
                token, expires = users.issue_token(user.username, now(), ttl)
                return user, token, expires

        got = guard.run(body.username, client, check)
        if got is None:
            return err(401, "wrong username or password", {"WWW-Authenticate": "Bearer"})
        user, token, expires = got
        return JSONResponse({"token": token, "token_type": "bearer", "expires_at": expires.isoformat(),
                             "user": _user_json(user)}, headers={"Cache-Control": "no-store"})

    @r.post("/auth/logout", tags=["auth"], status_code=204, summary="End this token's session")
    def logout(svc: Svc, user: Me,
               creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Response:
        del user
        if creds is not None:
            Users(svc.conn).revoke(creds.credentials)
        return Response(status_code=204)

    @r.get("/me", tags=["auth"], summary="Who am I")
    def me(user: Me) -> dict[str, Any]:
        return _user_json(user)

    # -- live updates -----------------------------------------------------------------------------------

    def session_user(request: Request,
                     creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> User:
        """The same bearer token as every route, looked up on a pooled connection that goes back at once:
        a stream open for hours must not hold one. Without a bearer header, the dashboard's HttpOnly
        session cookie (the same token; a browser's EventSource cannot send a header). The cookie is
        SameSite=Lax, so another site's page cannot send it (and the push routes take JSON only)."""
        cookie = request.cookies.get(SESSION_COOKIE)
        token = bearer_token(creds) if creds is not None or not cookie else bearer_token(
            HTTPAuthorizationCredentials(scheme="Bearer", credentials=cookie))
        with db.storage() as st:
            return Users(st.conn).user_for_token(token, now())

    if live is not None:
        hub = live
        community_ids = {c.id for c in cs}
        stream_user = session_user

        # sse-starlette's EventSourceResponse rather than a hand-made StreamingResponse: it is maintained and
        # does what a long-lived stream needs (keep-alive comments, noticing a browser that went away, a send
        # timeout for one that stopped reading, no stream for HEAD, ending streams when uvicorn shuts down).
        @r.get("/stream", tags=["live"], response_class=EventSourceResponse,
               summary="Alarms and tickets as they change (Server-Sent Events)",
               description="`hello` first (fetch the current state over REST now), then `alarm` (a message of "
                           "the alarms topic: an alarm event, a rejected command or a care unit's status, with its "
                           "`community`) and `ticket` (the worker's message) events "
                           "you may see, `status` when the server lost the broker and `resync` when you missed "
                           "events (fetch the state again); a `heartbeat` event after 15 s without one (and a comment "
                           "line) keeps the stream open; the dashboard's session cookie is accepted too. "
                           "Last-Event-ID is not replayed: a reconnect starts with `hello`.",
               responses={200: {"content": {"text/event-stream": {}}},
                          503: {"description": "the server is shutting down or too many streams are open"}})
        async def stream(request: Request, user: Annotated[User, Depends(stream_user)],
                         community: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$",
                                                                description="only this community")] = None,
                         ) -> Response:
            leave = request.scope.get(LEAVE_ADMISSION)
            if leave is not None:
                leave()  # authenticated: the stream no longer counts against the API's admission limit
            if community is not None and community not in community_ids:
                raise TicketNotFound(f"no community {community!r} on this server")
            try:
                hub.admit()
            except HubUnavailable as exc:
                return err(503, str(exc), {"Retry-After": str(UNAVAILABLE_RETRY_S)})
            return EventSourceResponse(hub.events(user, community), ping=hub.keepalive_s,
                                       send_timeout=hub.send_timeout_s)

    # -- tickets ----------------------------------------------------------------------------------------

    @r.get("/tickets", tags=["tickets"], summary="Tickets I may see (a worker: their grids'), newest first")
    def list_tickets(svc: Svc, user: Me, state: TicketState | None = None, open_only: bool = False,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50,
                     offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> dict[str, Any]:
        ts = svc.list_for(user, state=state, open_only=open_only, limit=limit, offset=offset)
        t_now = now()
        return {"tickets": [_summary(svc, t, t_now) for t in ts], "limit": limit, "offset": offset}

    @r.post("/tickets", tags=["tickets"], status_code=201, summary="Manual report (operator), e.g. a resident's call")
    def create_ticket(body: ManualTicket, svc: Svc, user: Me) -> dict[str, Any]:
        t = svc.create_manual(user, community=body.community, title=body.title, description=body.description,
                              priority=body.priority, category=body.category, building=body.building,
                              floor=body.floor, unit=body.unit, contact=body.contact)
        return ticket_json(svc, t, user)

    @r.get("/tickets/{ticket_id}", tags=["tickets"], summary="One ticket as the worker receives it, with its timeline")
    def get_ticket(ticket_id: TicketId, svc: Svc, user: Me) -> dict[str, Any]:
        return ticket_json(svc, svc.get(ticket_id, user), user)

    @r.get("/tickets/{ticket_id}/snapshot.png", tags=["tickets"], summary="The 3D snapshot, alarm spot highlighted",
           response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def get_snapshot(ticket_id: TicketId, svc: Svc, user: Me) -> Response:
        svc.get(ticket_id, user)
        p = svc.photo(ticket_id, kind="snapshot")
        return Response(p.data, media_type=p.content_type, headers={"Cache-Control": "private, max-age=3600"})

    @r.get("/tickets/{ticket_id}/photos/{photo_id}", tags=["tickets"], summary="A photo from the ticket's timeline",
           response_class=Response, responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}})
    def get_photo(ticket_id: TicketId, photo_id: Annotated[int, Path(ge=1, le=2**62)], svc: Svc,
                  user: Me) -> Response:
        svc.get(ticket_id, user)
        p = svc.photo(ticket_id, photo_id)
        return Response(p.data, media_type=p.content_type, headers={"Cache-Control": "private, max-age=3600"})

    @r.post("/tickets/{ticket_id}/accept", tags=["actions"], summary="受理签收: the assigned worker accepts")
    def accept(ticket_id: TicketId, svc: Svc, user: Me, body: NoteBody | None = None) -> dict[str, Any]:
        b = body or NoteBody()
        return ticket_json(svc, svc.accept(user, ticket_id, b.note, version=b.version), user)

    @r.post("/tickets/{ticket_id}/feedback", tags=["actions"],
            summary="反馈 progress with an optional photo (multipart); plan=true hands in a complex ticket's plan")
    def feedback(ticket_id: TicketId, svc: Svc, user: Me,
                       note: Annotated[str, Form(max_length=4000)] = "",
                       plan: Annotated[bool, Form()] = False,
                       version: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
                       photo: Annotated[UploadFile | None, File(description="JPEG, PNG or WebP")] = None,
                       ) -> dict[str, Any]:
        p = _read_photo(photo, settings.tickets.photo_max_bytes)
        t = svc.progress(user, ticket_id, _clean(note), photo=p, plan=plan, version=version)
        return ticket_json(svc, t, user)

    add_fieldwork_routes(r, service, current_user, ticket_json)  # 到场 with a position, SOP ticks

    @r.post("/tickets/{ticket_id}/release", tags=["actions"], summary="解困: the trapped people are out (entrapment)")
    def release(ticket_id: TicketId, svc: Svc, user: Me, body: NoteBody | None = None) -> dict[str, Any]:
        b = body or NoteBody()
        return ticket_json(svc, svc.release(user, ticket_id, b.note, version=b.version), user)

    @r.post("/tickets/{ticket_id}/resolve", tags=["actions"],
            summary="办结: report it resolved (a reason while life-safety alarms are active)")
    def resolve(ticket_id: TicketId, body: ResolveBody, svc: Svc, user: Me) -> dict[str, Any]:
        t = svc.resolve(user, ticket_id, body.note, version=body.version, reason=body.reason,
                        reason_note=body.reason_note)
        return ticket_json(svc, t, user)

    @r.post("/tickets/{ticket_id}/cancel", tags=["operator"], summary="撤销 a false alarm (operator, supervisor)")
    def cancel(ticket_id: TicketId, body: CancelBody, svc: Svc, user: Me) -> dict[str, Any]:
        return ticket_json(svc, svc.cancel(user, ticket_id, body.reason, version=body.version, code=body.code), user)

    @r.post("/tickets/{ticket_id}/reassign", tags=["operator"], summary="Hand to another worker, with a reason")
    def reassign(ticket_id: TicketId, body: ReassignBody, svc: Svc, user: Me) -> dict[str, Any]:
        t = svc.reassign(user, ticket_id, body.assignee, body.reason, version=body.version)
        return ticket_json(svc, t, user)

    @r.post("/tickets/{ticket_id}/reopen", tags=["operator"], summary="Not solved after all: reopen, fresh clocks")
    def reopen(ticket_id: TicketId, body: ReasonBody, svc: Svc, user: Me) -> dict[str, Any]:
        return ticket_json(svc, svc.reopen(user, ticket_id, body.reason, version=body.version), user)

    @r.post("/tickets/{ticket_id}/escalate", tags=["operator"], summary="Escalate to the grid supervisor now")
    def escalate(ticket_id: TicketId, body: ReasonBody, svc: Svc, user: Me) -> dict[str, Any]:
        return ticket_json(svc, svc.escalate(user, ticket_id, body.reason, version=body.version), user)

    # -- knowledge ----------------------------------------------------------------------------------------

    @r.get("/knowledge", tags=["knowledge"], summary="Keyword search over SOPs, policies and cases")
    def search(svc: Svc, user: Me, q: Annotated[str, Query(max_length=200)] = "",
               limit: Annotated[int, Query(ge=1, le=50)] = 10) -> dict[str, Any]:
        del user
        if not q.strip():
            docs = sorted(svc.knowledge.documents.values(), key=lambda d: (d.type, d.id))
            return {"query": q, "results": [{**d.summary(), "score": None, "snippet": d.lead} for d in docs]}
        hits = svc.knowledge.search(q, limit=limit)
        return {"query": q, "results": [{**h.document.summary(), "score": h.score, "snippet": h.snippet}
                                        for h in hits]}

    @r.get("/knowledge/{doc_id}", tags=["knowledge"], summary="One document in full")
    def document(doc_id: Annotated[str, Path(max_length=64)], svc: Svc, user: Me) -> dict[str, Any]:
        del user
        d = svc.knowledge.get(doc_id)
        if d is None:
            raise TicketNotFound(f"no document {doc_id!r}")
        return d.as_dict()

    # -- the resident ----------------------------------------------------------------------------------------

    @r.get("/rate/{token}", tags=["resident"], summary="The resident's rating page (no login)",
           responses={200: {"content": {"application/json": {}, "text/html": {}}}})
    def rate_page(token: RateToken, svc: Svc, request: Request) -> Response:
        t = svc.by_token(token)
        info = _public(svc, t)
        if "text/html" in request.headers.get("accept", ""):
            nonce = secrets.token_urlsafe(16)
            return HTMLResponse(_rate_html(info, token, nonce), headers={"Content-Security-Policy": (
                f"default-src 'none'; script-src 'nonce-{nonce}'; connect-src 'self'; img-src 'self'; "
                "style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")})
        return JSONResponse(info)

    @r.post("/rate/{token}", tags=["resident"], summary="Rate the handling 1-5 with a comment (no login)")
    def rate(token: RateToken, body: Rating, svc: Svc) -> dict[str, Any]:
        t = svc.rate(token, body.rating, body.comment)
        return {**_public(svc, t), "thanks": "感谢您的评价！"}

    # -- KPIs and users ------------------------------------------------------------------------------------

    @r.get("/kpi", tags=["operator"], summary="KPIs per worker, grid and community (supervisor, operator)",
           response_model=None)
    def kpi(svc: Svc, user: Me, start: Annotated[date, Query(alias="from")], end: Annotated[date, Query(alias="to")],
            community: Annotated[str | None, Query(max_length=64)] = None,
            format: Annotated[Literal["json", "csv", "md"], Query()] = "json") -> dict[str, Any] | Response:
        need(user, Role.SUPERVISOR, Role.OPERATOR, Role.ADMIN)
        if not (2000 <= start.year <= 2999 and 2000 <= end.year <= 2999) or end < start:
            raise InvalidInput("from and to must be dates in 2000..2999 with from <= to")
        a, b = svc_period(svc, start, end)
        rows = svc.kpis(a, b, community=_clean(community) if community else None, user=user)
        if format == "csv":
            return PlainTextResponse(kpi_csv(rows), media_type="text/csv")
        if format == "md":
            return PlainTextResponse(tk.kpi_markdown(rows, f"KPIs {start} .. {end}"), media_type="text/markdown")
        return {"from": start.isoformat(), "to": end.isoformat(), "rows": [r.as_dict() for r in rows]}

    @r.get("/stats/false-alarms", tags=["operator"],
           summary="False alarms per device and rule, by the reasons given when tickets were closed (supervisor, "
                   "operator)")
    def false_alarms(svc: Svc, user: Me, start: Annotated[date, Query(alias="from")],
                     end: Annotated[date, Query(alias="to")],
                     community: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
        need(user, Role.SUPERVISOR, Role.OPERATOR, Role.ADMIN)
        if not (2000 <= start.year <= 2999 and 2000 <= end.year <= 2999) or end < start:
            raise InvalidInput("from and to must be dates in 2000..2999 with from <= to")
        a, b = svc_period(svc, start, end)
        rows = svc.false_alarms(a, b, community=_clean(community) if community else None, user=user)
        return {"from": start.isoformat(), "to": end.isoformat(), "reasons": tk.CLOSE_REASONS,
                "rows": [r.as_dict() for r in rows]}

    @r.get("/users", tags=["admin"], summary="Users (admin)")
    def users(svc: Svc, user: Me) -> dict[str, Any]:
        need(user, Role.ADMIN)
        return {"users": [_user_json(u) for u in Users(svc.conn).all()]}

    @r.post("/users", tags=["admin"], status_code=201, summary="Add or update a user (admin)")
    def add_user(body: NewUser, svc: Svc, user: Me) -> dict[str, Any]:
        need(user, Role.ADMIN)
        created = Users(svc.conn).add(body.username, body.password, body.role, display_name=body.display_name,
                                      grids=body.grids, worker_id=body.worker_id, update=body.update)
        u = Users(svc.conn).get(body.username)
        return {"created": created, "user": _user_json(u) if u else None}

    app.include_router(r)
    app.include_router(push_api.router(settings, db.storage, session_user))  # Web Push subscriptions (phones)
    app.include_router(care_api.router(cs, service, current_user, settings))  # the care register
    app.include_router(patrols_api.router(cs, service, current_user))  # patrols, check-ins, positions
    app.include_router(hotspots_api.router(cs, service, current_user))  # alarms + reports per place, hints
    app.include_router(outcomes_api.router(cs, service, current_user))  # outcomes against targets
    app.include_router(reports_api.router(cs, service, current_user, settings))  # one-click reports, checks
    # residents' POSTs, one budget per address for all gateways (in the database): reports, ratings and handoffs
    # to a person share one; questions to the assistant have their own
    resident_posts = SharedLimiter("resident_posts", 5, 120.0, db.storage)
    resident_asks = SharedLimiter("resident_asks", 10, 6.0, db.storage, fallback=True)  # asking needs no database
    app.include_router(reports_public.router(settings, cs, contextlib.contextmanager(service),  # residents: /r/...
                                             report_limit=resident_posts))
    app.include_router(assistant_api.router(cs, service, current_user))  # the knowledge assistant, handoffs
    app.include_router(assistant_public.router(cs, contextlib.contextmanager(service), handoff_limit=resident_posts,
                                               ask_limit=resident_asks))

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, str]:
        """200 while the database answers, else 503 (for a load balancer or supervisor)."""
        with db.storage() as st:
            st.conn.execute("SELECT 1")
        return {"status": "ok"}

    return app


class Admission:
    """ASGI middleware: at most ``limit`` requests in the app at once; the others wait here, without a
    thread. Every admitted request can then get a thread for each sync step (dependency, route, the
    dependency's exit), so a request holding a pooled connection never waits for a thread that requests
    waiting for a connection hold (that deadlock ends only when the pool's wait times out). Give the
    server's thread pool at least ``limit`` threads.

    A long-lived response (the live stream) calls ``scope[LEAVE_ADMISSION]()`` once its sync steps are
    done, so an open stream does not keep one of the ``limit`` places for as long as a browser stays."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._slots: anyio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = anyio.Semaphore(self.limit)
        slots = self._slots
        await slots.acquire()
        held = True

        def leave() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        scope[LEAVE_ADMISSION] = leave
        try:
            await self.app(scope, receive, send)
        finally:
            leave()


class SecurityHeaders:
    """ASGI middleware: the security headers every API response carries (a route may set its own CSP)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = str(scope.get("path", "")).startswith(f"{API_PREFIX}/docs")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h.setdefault("X-Content-Type-Options", "nosniff")
                h.setdefault("X-Frame-Options", "DENY")
                h.setdefault("Referrer-Policy", "no-referrer")
                h.setdefault("Content-Security-Policy", DOCS_CSP if docs else API_CSP)
                if _https(scope):
                    h.setdefault("Strict-Transport-Security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _https(scope: Scope) -> bool:
    if scope.get("scheme") == "https":
        return True
    for k, v in scope.get("headers", ()):
        if k == b"x-forwarded-proto":
            return bool(v.split(b",")[0].strip().lower() == b"https")
    return False


def svc_period(svc: TicketService, start: date, end: date) -> tuple[datetime, datetime]:
    """Local calendar days [start, end] as an aware [from, to) interval."""
    return (datetime.combine(start, time(0), svc.tz), datetime.combine(end + timedelta(days=1), time(0), svc.tz))


def _clean(text: str) -> str:
    try:
        return storable(text)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def _read_photo(photo: UploadFile | None, max_bytes: int) -> Photo | None:
    if photo is None:
        return None
    data = photo.file.read(max_bytes + 1)
    ctype = photo.content_type or ""
    if ctype.split(";")[0].strip().lower() not in PHOTO_TYPES:
        raise PhotoRejected(415, f"photo content type {ctype or '(none)'!r} is not accepted; send "
                                 f"{', '.join(PHOTO_TYPES)}")
    if len(data) > max_bytes:
        raise PhotoRejected(413, f"photo is larger than the limit of {max_bytes} bytes")
    return Photo(ctype, data)


def _summary(svc: TicketService, t: tk.Ticket, at: datetime) -> dict[str, Any]:
    return {"id": t.id, "version": t.version, "title": t.title, "state": t.state.value,
            "state_zh": t.state.label_zh, "priority": t.priority.value, "life_safety": t.life_safety,
            "category": t.category, "grid": t.grid, "assignee": t.assignee, "building": t.building,
            "floor": t.floor, "unit": t.unit, "created_at": svc.iso(t.created_at),
            "respond_by": svc.iso(t.respond_by), "resolve_by": svc.iso(t.resolve_by),
            "remaining_s": tk.remaining(t, at), "breaches": t.breaches, "escalations": t.escalations}


def _public(svc: TicketService, t: tk.Ticket) -> dict[str, Any]:
    """What a resident may see through the rating link: no names, phones or internal notes."""
    c = svc.communities.get(t.community)
    resolution = next((e["note"] for e in reversed(svc.timeline(t.id)) if e["action"] == "resolve"), None)
    return {"title": t.title, "location": tk.location_text(c, t.building, t.floor, t.unit),
            "state": t.state.value, "state_zh": t.state.label_zh, "created_at": svc.iso(t.created_at),
            "resolved_at": svc.iso(t.resolved_at), "resolution": resolution,
            "can_rate": t.state is TicketState.FEEDBACK and report_rate_problem(svc.conn, t) is None,  # 核查 pending?
            "rating": t.rating, "comment": t.rating_comment}


def _rate_html(info: dict[str, Any], token: str, nonce: str = "") -> str:
    esc = html.escape
    form = ""
    if info["can_rate"]:
        stars = "".join(f'<label><input type="radio" name="r" value="{i}"{" checked" if i == 5 else ""}> {i}</label> '
                        for i in range(1, 6))
        form = (f'<form id="f">{stars}<p><textarea id="c" maxlength="1000" placeholder="意见和建议（可选）"></textarea>'
                f'</p><button>提交评价</button></form><p id="m"></p><script nonce="{esc(nonce)}">'
                'document.getElementById("f").onsubmit=async e=>{e.preventDefault();'
                'const r=+document.querySelector("input[name=r]:checked").value,c=document.getElementById("c").value;'
                f'const x=await fetch("{API_PREFIX}/rate/{esc(token)}",{{method:"POST",headers:{{"Content-Type":'
                '"application/json"},body:JSON.stringify({rating:r,comment:c||null})});'
                'const j=await x.json();document.getElementById("m").textContent=x.ok?j.thanks:j.detail;'
                'if(x.ok)document.getElementById("f").remove();};</script>')
    elif info["rating"] is not None:
        form = f"<p>您已评价：{esc(str(info['rating']))} 分。感谢！</p>"
    else:
        form = "<p>问题办结后即可评价。</p>"
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><title>评价 · {esc(info["title"])}</title></head><body>'
            f'<h1>{esc(info["title"])}</h1><p>{esc(info["location"])}</p><p>状态：{esc(info["state_zh"])}</p>'
            f'<p>处理结果：{esc(info["resolution"] or "-")}</p>{form}</body></html>')
