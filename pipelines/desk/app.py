"""The desk's web application (Starlette): sign-in, breaches, notices, the pack, agreements
and Data Docs.

Every page needs a signed-in account; a signed-out visitor is sent to the sign-in page
and sees nothing else, and a form posted without one is refused. Leads may act (a breach's
lifecycle, marking a notice as sent, emailing it to the agreement's contact where the
settings allow); viewers read, see no buttons, and are refused if they post anyway. Each
action is recorded in the register and the audit log under the signed-in person's name,
and every page (and analysts) see it at once: the warehouse's views read the lake's files,
and it is rebuilt when they could not show it (`Desk.show_changes`).

Security, in layers: session cookies signed by Starlette's SessionMiddleware (HTTP-only,
SameSite=Lax, Secure when served over https, ending `session_minutes` after sign-in, and
in every browser of the account when it signs out); asgi-csrf's double-submit token on
every form (every POST is checked, with or without cookies); argon2 password hashes
(`pipelines.desk.users`); failed sign-ins limited per account name and per address
(`limits`); Jinja autoescaping of everything from a delivery; a Content-Security-Policy
that runs no script on the desk's own pages.
"""

from __future__ import annotations

import functools
import html
import re
import smtplib
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path
from urllib.parse import quote

import duckdb
import jinja2
from asgi_csrf import asgi_csrf
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from markdown_it import MarkdownIt
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from pipelines.desk import queries
from pipelines.desk.config import DeskConfig, cookie_secret, load_desk_config
from pipelines.desk.docs_files import NotServed, docs_sites, read_docs_file, site_path
from pipelines.desk.mail import load_mail_settings, provider_contact, smtp
from pipelines.desk.users import User, UserStore
from pipelines.governance.audit_log import record_export
from pipelines.governance.breach_notice import (
    NothingToSend,
    notice_from_warehouse,
    what_we_did,
    write_notice,
)
from pipelines.governance.breach_register import TRANSITIONS, BreachChangeError, BreachRegister
from pipelines.home.settings import Settings
from pipelines.lake.store import open_lake
from pipelines.warehouse.catalog import build_warehouse, catalog_current, connect
from schemas.contract import load_contracts
from schemas.contract_page import agreement_title, contract_document, render_file
from schemas.period_words import date_words, period_words, time_words

TEMPLATES = Path(__file__).resolve().with_name("templates")
SESSION_COOKIE = "datashare_desk"
NOTE_LIMIT = 2_000  # characters of a note a lead writes
# What each lifecycle button is called, in the order a breach goes through them.
ACTION_WORDS = {
    "notify": "Mark notified (sent to the force)",
    "ack": "Acknowledged by the force",
    "resolve": "Resolve",
    "waive": "Waive",
    "reopen": "Reopen",
}
NEEDS_NOTE = ("waive", "reopen")
PERIOD = re.compile(r"^\d{4}(-\d{2})?$")
# The desk's own pages run no script at all. Data Docs (great-expectations' pages, whose
# tables use their bundled jQuery and Bootstrap from the lake's docs/_static) may run
# scripts, but sandboxed: in an origin of their own, so a script a delivery smuggled into
# a page could neither read the desk's pages nor act on them with the reader's session.
PAGE_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'"
)
DOCS_POLICY = (
    "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox; default-src 'self'; "
    "script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; frame-ancestors 'self'; form-action 'none'; "
    "base-uri 'none'"
)
STATIC_DOCS = "_static/"  # the Data Docs' own CSS, scripts and fonts (no data)


class _EveryPath:
    """asgi-csrf's `always_protect`: every path, so a POST without cookies (a forged
    sign-in, or a request through a single sign-on proxy) is checked too."""

    def __contains__(self, path: object) -> bool:
        return True


MAX_FORM_BYTES = 64 * 1024  # a form here is a note; asgi-csrf reads a body whole


def small_forms(app: ASGIApp) -> ASGIApp:
    """Refuse a POST without a length, or longer than any form of the desk (before anything
    reads it into memory); browsers give the length of every form they send."""

    async def guarded(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            length = dict(scope.get("headers") or []).get(b"content-length", b"")
            status = 411 if not length.isdigit() else 413 if int(length) > MAX_FORM_BYTES else 0
            if status:
                await PlainTextResponse("Form refused.", status)(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded


class SecurityHeaders(BaseHTTPMiddleware):
    """Headers that stop a page being framed elsewhere, sniffed or cached."""

    async def dispatch(self, request: Request, call_next: Callable[..., Awaitable[Response]]):
        response = await call_next(request)
        docs = request.url.path.startswith("/docs/")
        response.headers.setdefault("Content-Security-Policy", DOCS_POLICY if docs else PAGE_POLICY)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["Cache-Control"] = "no-store"
        return response


class Desk:
    """What the pages share: the home's settings, its accounts, the sign-in limiter."""

    def __init__(self, settings: Settings, config: DeskConfig, today: date | None = None):
        self.settings = settings
        self.config = config
        self.users = UserStore(settings.home)
        self.fixed_today = today
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.per_name = parse(config.signin_limit)
        # An address may try several names: four times the per-name allowance.
        self.per_address = type(self.per_name)(self.per_name.amount * 4, self.per_name.multiples)
        self.changes = threading.Lock()  # one lead's change and rebuild at a time
        self._contracts = None

    def today(self) -> date:
        return self.fixed_today or datetime.now().date()

    @property
    def contracts(self):
        if self._contracts is None:
            self._contracts = load_contracts()
        return self._contracts

    def user(self, request: Request) -> User | None:
        """The signed-in account, or None: from the proxy's header when that is trusted,
        else from the session (ended `session_minutes` after sign-in, and at once when the
        account is removed)."""
        header = self.config.trusted_user_header
        if header and request.headers.get(header):
            return self.users.get(request.headers[header].strip())
        name = request.session.get("user")
        since = request.session.get("signed_in_at", 0)
        if not name or time.time() - since > self.config.session_minutes * 60:
            return None
        user = self.users.get(name)
        if user is None or since < user.sessions_after:  # signed out everywhere since
            return None
        return user

    def ensure_warehouse(self) -> None:
        """A warehouse with the breach views: built from the lake if missing or older."""
        if not queries.has_breach_views(self.settings.warehouse):
            self.rebuild()

    def rebuild(self) -> None:
        """Build the warehouse afresh from the lake (one an earlier version built lacks views)."""
        build_warehouse(open_lake(self.settings.lake), self.contracts, self.settings.warehouse)

    def show_changes(self) -> None:
        """Make the warehouse show the lake as it is now. Its views read the lake's files by
        pattern, so a breach's new status, an export or an audit entry shows through them as
        soon as it is written; it is rebuilt only when a rebuild would not make the same
        catalog (`catalog_current`: a record set's first file, which the catalog holds as
        an empty table until then; another contract or version), as a run's step does. A
        rebuild is a second or more of CPU, growing with the lake; the check, milliseconds."""
        lake = open_lake(self.settings.lake)
        if not catalog_current(self.settings.warehouse, lake, self.contracts):
            build_warehouse(lake, self.contracts, self.settings.warehouse)

    def title(self, contract: str) -> str:
        c = self.contracts.get(contract)
        return agreement_title(contract_document(c.path)) if c else contract

    def when(self, contract: str, period: str) -> str:
        c = self.contracts.get(contract)
        return period_words(period, c.schedule.period if c else "monthly")


# --- the pages' plumbing -----------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["time_words"] = lambda v: time_words(v) if v else ""
    env.filters["date_words"] = lambda v: date_words(v) if v else ""
    env.filters["thousands"] = lambda v: (
        f"{v:,}" if isinstance(v, int) else ("" if v is None else v)
    )
    env.filters["quote"] = lambda v: quote(str(v), safe="")
    return env


templates = Jinja2Templates(env=_environment())


def _render(request: Request, template: str, status: int = 200, **context) -> Response:
    desk: Desk = request.app.state.desk
    flash = request.session.pop("flash", None)
    return templates.TemplateResponse(
        request,
        template,
        {"user": getattr(request.state, "user", None), "flash": flash, "desk": desk, **context},
        status_code=status,
    )


def _message(request: Request, title: str, text: str, status: int) -> Response:
    return _render(request, "message.html", status=status, title=title, text=text)


def _local(target: str | None) -> str:
    """A redirect target on this site only (never `//elsewhere` or `https://...`)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


def signed_in(handler: Callable[[Request], Awaitable[Response]]):
    """The page needs a signed-in account: others are sent to sign in (a GET) or refused."""

    @functools.wraps(handler)
    async def page(request: Request) -> Response:
        user = request.app.state.desk.user(request)
        if user is None:
            if request.method in ("GET", "HEAD"):
                wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(wanted, safe='')}", 303)
            return Response("Sign in first.", 403, media_type="text/plain")
        request.state.user = user
        return await handler(request)

    return page


def leads_only(handler: Callable[[Request], Awaitable[Response]]):
    """The action needs a lead: a viewer is refused (and nothing is recorded)."""

    @functools.wraps(handler)
    async def action(request: Request) -> Response:
        if not request.state.user.is_lead:
            return _message(
                request, "Not allowed", "Only a lead can do this; your account reads only.", 403
            )
        return await handler(request)

    return signed_in(action)


# --- sign-in -------------------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    return _render(request, "login.html", next=_local(request.query_params.get("next")), error="")


async def login(request: Request) -> Response:
    desk: Desk = request.app.state.desk
    form = await request.form()
    name = str(form.get("name", "")).strip()[:64]
    password = str(form.get("password", ""))[:1024]
    target = _local(str(form.get("next", "/")))
    address = request.client.host if request.client else "unknown"
    if not (
        desk.limiter.test(desk.per_name, "name", name.lower())
        and desk.limiter.test(desk.per_address, "address", address)
    ):
        return _render(
            request, "login.html", status=429, next=target,
            error="Too many failed sign-ins: wait a few minutes, then try again.",
        )  # fmt: skip
    user = await run_in_threadpool(desk.users.verify, name, password)
    if user is None:
        desk.limiter.hit(desk.per_name, "name", name.lower())
        desk.limiter.hit(desk.per_address, "address", address)
        return _render(
            request, "login.html", status=401, next=target,
            error="That name and password do not match an account.",
        )  # fmt: skip
    desk.limiter.clear(desk.per_name, "name", name.lower())
    request.session.clear()
    request.session.update({"user": user.name, "signed_in_at": time.time()})
    return RedirectResponse(target, 303)


async def logout(request: Request) -> Response:
    """Sign out, everywhere: every session of the account ends, including a copied cookie."""
    desk: Desk = request.app.state.desk
    user = desk.user(request)
    if user is not None and request.session.get("user") == user.name:
        await run_in_threadpool(desk.users.end_sessions, user.name)
    request.session.clear()
    return RedirectResponse("/login", 303)


# --- breaches ------------------------------------------------------------------------------------


@signed_in
async def breaches(request: Request) -> Response:
    desk: Desk = request.app.state.desk
    query = queries.BreachQuery.from_params(dict(request.query_params))
    page = await run_in_threadpool(queries.breach_page, desk.settings.warehouse, query)
    return _render(
        request, "breaches.html", query=query, page=page, sorts=queries.SORTS,
        statuses=queries.STATUS_CHOICES, ages=queries.AGE_CHOICES,
        severities=queries.SEVERITIES,
    )  # fmt: skip


@signed_in
async def breach(request: Request) -> Response:
    desk: Desk = request.app.state.desk
    found = await run_in_threadpool(
        queries.breach_detail, desk.settings.warehouse, request.path_params["breach_id"]
    )
    if found is None:
        return _message(request, "No such breach", "The register has no breach by that id.", 404)
    entry, history = found
    actions = [a for a, (allowed, _) in TRANSITIONS.items() if entry["status"] in allowed]
    docs = None  # the delivery's Data Docs, when the pipeline wrote them
    if entry.get("delivery_id"):
        lake = open_lake(desk.settings.lake)
        args = (entry["contract"], entry["period"], entry["delivery_id"])
        if await run_in_threadpool(lake.exists, f"{lake.docs_dir(*args)}/index.html"):
            docs = site_path(*args)
    return _render(
        request, "breach.html", b=entry, history=history, what_we_did=what_we_did(entry),
        actions=actions, action_words=ACTION_WORDS, needs_note=NEEDS_NOTE,
        when=desk.when(entry["contract"], entry["period"]), title=desk.title(entry["contract"]),
        has_notice=entry["contract"] in desk.contracts, docs=docs,
    )  # fmt: skip


@leads_only
async def breach_action(request: Request) -> Response:
    desk: Desk = request.app.state.desk
    breach_id, action = request.path_params["breach_id"], request.path_params["action"]
    form = await request.form()
    note = " ".join(str(form.get("note", "")).split())[:NOTE_LIMIT]
    back = f"/breaches/{quote(breach_id, safe='')}"
    if action not in TRANSITIONS:
        return _message(request, "No such step", f"{action!r} is not a step of a breach.", 404)
    if action in NEEDS_NOTE and not note:
        request.session["flash"] = f"A {action} needs a note saying why: nothing was recorded."
        return RedirectResponse(back, 303)

    def change() -> str:
        with desk.changes:
            entry = BreachRegister(open_lake(desk.settings.lake)).change(
                breach_id, action, request.state.user.name, note
            )
            desk.show_changes()  # every page, and analysts, see the new status at once
        return entry["status"]

    try:
        status = await run_in_threadpool(change)
    except BreachChangeError as refused:
        request.session["flash"] = str(refused).replace("with --note", "in the note")
        return RedirectResponse(back, 303)
    request.session["flash"] = f"{breach_id} is now {status} (by {request.state.user.name})."
    return RedirectResponse(back, 303)


# --- notices -------------------------------------------------------------------------------------


def _notice_args(request: Request) -> tuple[str, str] | None:
    desk: Desk = request.app.state.desk
    contract, period = request.path_params["contract"], request.path_params["period"]
    if contract not in desk.contracts or not PERIOD.match(period):
        return None
    return contract, period


def _notice(desk: Desk, contract: str, period: str):
    with connect(desk.settings.warehouse) as con:
        return notice_from_warehouse(con, desk.contracts[contract], period, desk.today())


@signed_in
async def notices(request: Request) -> Response:
    desk: Desk = request.app.state.desk
    months = await run_in_threadpool(queries.notice_months, desk.settings.warehouse)
    return _render(request, "notices.html", months=months)


@signed_in
async def notice(request: Request) -> Response:
    desk: Desk = request.app.state.desk
    args = _notice_args(request)
    if args is None:
        return _message(request, "No such notice", "No agreement or period by that name.", 404)
    contract, period = args
    try:
        letter = await run_in_threadpool(_notice, desk, contract, period)
    except NothingToSend as nothing:
        return _message(request, "Nothing to send", str(nothing), 404)
    sent = await run_in_threadpool(queries.exports_of, desk.settings.warehouse, contract, period)
    return _render(
        request, "notice.html", contract=contract, period=period, letter=letter, sent=sent,
        when=desk.when(contract, period), title=desk.title(contract),
        default_note=f"notice of {date_words(desk.today())}",
        email_to=_email_to(desk, contract),
    )  # fmt: skip


@signed_in
async def notice_letter(request: Request) -> Response:
    """The letter alone, as `datashare breaches notice` writes it: printable."""
    desk: Desk = request.app.state.desk
    args = _notice_args(request)
    if args is None:
        return _message(request, "No such notice", "No agreement or period by that name.", 404)
    try:
        letter = await run_in_threadpool(_notice, desk, *args)
    except NothingToSend as nothing:
        return _message(request, "Nothing to send", str(nothing), 404)
    return HTMLResponse(letter.html)


def _email_to(desk: Desk, contract: str) -> tuple[str, str] | None:
    """The agreed contact a notice may be emailed to, when the settings allow it."""
    if not desk.config.email_notices or load_mail_settings() is None:
        return None
    return provider_contact(desk.contracts[contract])


def _letter_email(letter, sender: str, to: tuple[str, str]) -> EmailMessage:
    """The notice as an email: the Markdown as its text, the printable letter as HTML."""
    title = re.search(r"<title>(.*?)</title>", letter.html, re.S)
    message = EmailMessage()
    message["Subject"] = html.unescape(title.group(1)) if title else "Notice of breaches"
    message["From"] = sender
    message["To"] = formataddr(to)
    message.set_content(letter.markdown)
    message.add_alternative(letter.html, subtype="html")
    return message


def _record_sent(
    desk: Desk, contract: str, period: str, by: str, note: str, email: bool = False
) -> tuple[int, str | None]:
    """Record the month's notice as sent (its files kept in the home's notices/, an export
    in the audit log) and mark its open breaches notified, under `by`'s name; with `email`,
    send it to the agreed contact first. Returns how many breaches were notified and the
    address it went to."""
    with desk.changes:
        desk.show_changes()  # the letter as the lake has it now
        letter = _notice(desk, contract, period)
        sent_to = None
        if email:
            to, mail = _email_to(desk, contract), load_mail_settings()
            if to is None or mail is None:
                raise LookupError("email is not set up for notices of this agreement")
            with smtp(mail) as server:
                server.send_message(_letter_email(letter, mail.sender, to))
            sent_to = to[1]
        md, _ = write_notice(letter, desk.settings.home / "notices", contract, period)
        lake = open_lake(desk.settings.lake)
        what = f"notice {md.name} ({len(letter.breach_ids)} breach(es))"
        record_export(
            lake, contract, period, what + (f", emailed to {sent_to}" if sent_to else ""),
            by, "notice to the force under the data-sharing agreement",
        )  # fmt: skip
        register = BreachRegister(lake)
        still_open = {
            e["breach_id"]
            for e in register.entries(contract, period)
            if e["status"] == "open" and e["breach_id"] in letter.breach_ids
        }
        for breach_id in sorted(still_open):
            register.change(breach_id, "notify", by, note)
        desk.show_changes()
    return len(still_open), sent_to


async def _sent(request: Request, email: bool) -> Response:
    desk: Desk = request.app.state.desk
    args = _notice_args(request)
    if args is None:
        return _message(request, "No such notice", "No agreement or period by that name.", 404)
    contract, period = args
    form = await request.form()
    note = " ".join(str(form.get("note", "")).split())[:NOTE_LIMIT]
    note = note or f"notice of {date_words(desk.today())}"
    by = request.state.user.name
    back = RedirectResponse(f"/notices/{contract}/{period}", 303)
    try:
        notified, sent_to = await run_in_threadpool(
            _record_sent, desk, contract, period, by, note, email
        )
    except NothingToSend as nothing:
        return _message(request, "Nothing to send", str(nothing), 404)
    except LookupError as off:
        return _message(request, "Not sent", f"Not sent: {off}.", 403)
    except (OSError, smtplib.SMTPException) as failed:
        request.session["flash"] = f"Not sent, nothing recorded: the mail server said {failed}."
        return back
    how = f"Emailed to {sent_to} and recorded" if sent_to else "Recorded"
    request.session["flash"] = (
        f"{how} as sent by {by}; {notified} breach(es) marked notified ({note})."
    )
    return back


@leads_only
async def notice_sent(request: Request) -> Response:
    """Mark as sent (the letter went another way): recorded under the lead's name."""
    return await _sent(request, email=False)


@leads_only
async def notice_email(request: Request) -> Response:
    """Email the letter to the agreement's contact, then record it as sent."""
    return await _sent(request, email=True)


@signed_in
async def audit(request: Request) -> Response:
    """Who did what and when: the latest entries of `governance.audit_log`."""
    desk: Desk = request.app.state.desk
    entries = await run_in_threadpool(queries.audit_log, desk.settings.warehouse)
    return _render(request, "audit.html", entries=entries)


# --- the pack, agreements, Data Docs ------------------------------------------------------------


@signed_in
async def pack(request: Request) -> Response:
    desk: Desk = request.app.state.desk
    path = desk.settings.home / "reports" / "oversight-pack.html"
    if not path.is_file():
        return _message(
            request, "No oversight pack yet",
            "The pack is written by `datashare report` (and at the end of `datashare demo`).", 404,
        )  # fmt: skip
    return HTMLResponse(path.read_text(encoding="utf-8"))


@signed_in
async def contracts(request: Request) -> Response:
    desk: Desk = request.app.state.desk
    rows = [(name, desk.title(name)) for name in sorted(desk.contracts)]
    return _render(request, "contracts.html", contracts=rows)


_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


@signed_in
async def contract(request: Request) -> Response:
    """The agreement page `datashare contracts show` prints, as HTML (raw HTML in the
    Markdown is escaped, never passed through)."""
    desk: Desk = request.app.state.desk
    name = request.path_params["name"]
    if name not in desk.contracts:
        return _message(request, "No such agreement", "No contract by that name.", 404)
    path = desk.contracts[name].path
    body = await run_in_threadpool(render_file, path, f"data_contracts/{path.name}")
    return _render(request, "contract.html", name=name, body=_MARKDOWN.render(body))


@signed_in
async def contract_review(request: Request) -> Response:
    """The agreement's review (`datashare agreement review`) over a window, as the page
    that command writes (`?from=YYYY-MM&to=YYYY-MM`; default the last 12 periods ended)."""
    from pipelines.reviews.agreement_page import agreement_review_html

    desk: Desk = request.app.state.desk
    name = request.path_params["name"]
    first, last = request.query_params.get("from"), request.query_params.get("to")
    if name not in desk.contracts or any(p and not PERIOD.match(p) for p in (first, last)):
        return _message(request, "No such review", "No agreement or period by that name.", 404)

    def page() -> str:
        lake = open_lake(desk.settings.lake)
        return agreement_review_html(
            desk.settings.warehouse, lake, desk.contracts[name], desk.today(), first, last
        )

    try:
        return HTMLResponse(await run_in_threadpool(page))
    except duckdb.Error:
        # A warehouse built by an earlier version, without a view the review reads.
        await run_in_threadpool(desk.rebuild)
        return HTMLResponse(await run_in_threadpool(page))
    except ValueError as refused:  # a window the review cannot take
        return _message(request, "No review for that window", str(refused), 400)


@signed_in
async def docs_index(request: Request) -> Response:
    desk: Desk = request.app.state.desk
    sites = await run_in_threadpool(docs_sites, open_lake(desk.settings.lake))
    rows = sorted(sites)  # by contract, period, delivery
    return _render(
        request, "docs.html",
        sites=[(c, p, d, site_path(c, p, d)) for c, p, d in rows],
    )  # fmt: skip


async def _docs_file(request: Request, relative: str, headers: dict | None = None) -> Response:
    desk: Desk = request.app.state.desk
    try:
        found = await run_in_threadpool(read_docs_file, open_lake(desk.settings.lake), relative)
    except NotServed:
        return _message(request, "Not found", "No Data Docs page by that name.", 404)
    return Response(found.body, media_type=found.media_type, headers=headers)


@signed_in
async def docs_file(request: Request) -> Response:
    return await _docs_file(request, request.path_params["path"])


async def docs_static(request: Request) -> Response:
    """The Data Docs' CSS, scripts and fonts (the same files in every installation, no
    data): served without a session, because a sandboxed Data Docs page asks for them from
    an origin of its own, which is not sent the session cookie; readable from there."""
    return await _docs_file(
        request, STATIC_DOCS + request.path_params["path"], {"Access-Control-Allow-Origin": "*"}
    )


# --- the application -----------------------------------------------------------------------------


def create_app(
    settings: Settings, config: DeskConfig | None = None, today: date | None = None
) -> ASGIApp:
    """The desk for one home (`today` fixes the date notices are written on, for tests)."""
    config = config or load_desk_config()
    desk = Desk(settings, config, today)
    desk.ensure_warehouse()
    secret = cookie_secret(settings.home)
    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", breaches, methods=["GET"]),
        Route("/breaches/{breach_id}", breach, methods=["GET"]),
        Route("/breaches/{breach_id}/{action}", breach_action, methods=["POST"]),
        Route("/notices", notices, methods=["GET"]),
        Route("/notices/{contract}/{period}", notice, methods=["GET"]),
        Route("/notices/{contract}/{period}/letter", notice_letter, methods=["GET"]),
        Route("/notices/{contract}/{period}/sent", notice_sent, methods=["POST"]),
        Route("/notices/{contract}/{period}/email", notice_email, methods=["POST"]),
        Route("/audit", audit, methods=["GET"]),
        Route("/pack", pack, methods=["GET"]),
        Route("/contracts", contracts, methods=["GET"]),
        Route("/contracts/{name}", contract, methods=["GET"]),
        Route("/contracts/{name}/review", contract_review, methods=["GET"]),
        Route("/docs", docs_index, methods=["GET"]),
        Route("/docs/_static/{path:path}", docs_static, methods=["GET"]),
        Route("/docs/{path:path}", docs_file, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=secret,
                session_cookie=SESSION_COOKIE,
                max_age=config.session_minutes * 60,
                same_site="lax",
                https_only=config.secure_cookies,
            ),
        ],
    )
    app.state.desk = desk
    return small_forms(
        asgi_csrf(
            app,
            signing_secret=secret,
            always_protect=_EveryPath(),
            cookie_secure=config.secure_cookies,
            cookie_samesite="Strict",
        )
    )
