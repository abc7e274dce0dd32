"""The page's web application (Starlette): the form, the verdicts, the JSON API, the LaTeX download, the static files.

Routes: GET / the page; POST / the page with the verdicts of the claims it was given;
POST /api/check the same as JSON; GET or POST /latex the LaTeX document of the chosen
network; /static the page's CSS and script and KaTeX (vendored, so the page works
offline). A request body over MAX_BODY bytes is refused with 413 before it is read
whole; every check runs in a worker process with a time limit (derive.serve.pool).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from urllib.parse import parse_qs

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from derive.errors import DeriveError
from derive.serve import pool, work
from derive.spec import builtin_names
from derive.tables.reading import READINGS
from derive.verdict import Verdict

MAX_BODY = 64 * 1024  # bytes of one request's body: a page of claims is a few kilobytes
MAX_LINES = 50  # claims checked in one request
HERE = Path(__file__).parent
DEFAULT = {"spec": "nielsen", "spec_text": "", "sizes": "3-4-2", "notation": "", "form": "latex",
           "claims": "\\delta^1 = (W^2)^T \\delta^2 \\odot \\sigma'(z^1)\n"
                     "\\frac{\\partial C}{\\partial W^2} = \\delta^2 (a^1)^T\n"}
SECURITY = {"Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class BadRequest(Exception):
    """A request the page refuses: its status and one line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def create_app(processes: int = 2, check_seconds: float = pool.CHECK_SECONDS,
               document_seconds: float = pool.DOCUMENT_SECONDS) -> Starlette:
    """The application, with its own pool of `processes` worker processes (started with the app, stopped with it)."""
    workers = pool.Workers(processes)
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                   undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    async def page(request: Request) -> Response:
        if request.method == "GET":
            return _html(templates, dict(DEFAULT), None)
        try:
            fields = _form(await _body(request))
            result = await _check(workers, fields, check_seconds)
        except BadRequest as exc:
            return _html(templates, dict(DEFAULT), {"error": exc.message}, exc.status)
        return _html(templates, fields, result)

    async def api(request: Request) -> Response:
        try:
            body = await _body(request)
            try:
                data = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                raise BadRequest(400, "the body is not JSON: send {\"claims\": \"...\", \"form\": \"latex\", "
                                      "\"spec\": \"nielsen\", \"sizes\": \"3-4-2\", \"notation\": \"\"}") from None
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise BadRequest(400, "the body is a JSON object of strings (claims, form, spec, spec_text, sizes, "
                                      "notation)")
            fields = {k: data.get(k, DEFAULT[k] if k != "claims" else "") for k in DEFAULT}
            return JSONResponse(await _check(workers, fields, check_seconds), headers=SECURITY)
        except BadRequest as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status, headers=SECURITY)

    async def latex(request: Request) -> Response:
        try:
            fields = dict(request.query_params) if request.method == "GET" else _form(await _body(request))
            setting = _setting(fields)
            try:
                name, text = await workers.call(document_seconds, work.document, setting)
            except DeriveError as exc:
                raise BadRequest(400, str(exc)) from None
            except TimeoutError as exc:
                raise BadRequest(503, f"the document {exc}; give smaller sizes, or run derive latex") from None
        except BadRequest as exc:
            return Response(exc.message + "\n", status_code=exc.status, media_type="text/plain", headers=SECURITY)
        return Response(text, media_type="application/x-tex", headers={
            **SECURITY, "Content-Disposition": f'attachment; filename="{name}"'})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        workers.start()
        try:
            yield
        finally:
            workers.stop()

    routes = [Route("/", page, methods=["GET", "POST"]), Route("/api/check", api, methods=["POST"]),
              Route("/latex", latex, methods=["GET", "POST"]),
              Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static")]
    return Starlette(routes=routes, lifespan=lifespan)


async def _body(request: Request) -> bytes:
    """The request's body, refused (413) past MAX_BODY bytes, whatever its Content-Length says."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise BadRequest(413, f"the request is {length} bytes; the page takes at most {MAX_BODY // 1024} KB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(413, f"the request is over {MAX_BODY // 1024} KB; the page takes at most that")
    return bytes(body)


def _form(body: bytes) -> dict:
    """A form's fields (application/x-www-form-urlencoded), each the first value given, missing ones empty."""
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "the form is not UTF-8 URL-encoded fields") from None
    return {k: parsed.get(k, [""])[0] for k in DEFAULT}


def _setting(fields: dict) -> work.Setting:
    return work.Setting(fields.get("spec", ""), fields.get("spec_text", ""), fields.get("sizes", ""),
                        fields.get("notation", ""))


async def _check(workers: pool.Workers, fields: dict, seconds: float) -> dict:
    """The network's line and every claim's verdict, or the one-line error that stops them."""
    if fields["form"] not in work.FORMS:
        raise BadRequest(400, f"form must be one of {', '.join(work.FORMS)}")
    lines = [line.strip() for line in fields["claims"].replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines:
        raise BadRequest(400, "no claims: paste one claim a line, such as \\delta^2 = (a^2 - y) \\odot \\sigma'(z^2)")
    if len(lines) > MAX_LINES:
        raise BadRequest(400, f"{len(lines)} claims; the page checks at most {MAX_LINES} at once")
    setting = _setting(fields)
    try:
        network = await workers.call(pool.SETTING_SECONDS, work.describe, setting)
    except TimeoutError as exc:
        return {"error": f"the network {exc}"}
    if "error" in network:
        return network
    results = await pool.check_many(workers, setting, fields["form"], lines, seconds)
    return {"network": network["line"], "results": results,
            "summary": {str(v): sum(r["verdict"] == v for r in results) for v in
                        (Verdict.PROVEN, Verdict.REFUTED, Verdict.UNPROVEN, Verdict.ERROR)}}


def _html(templates: jinja2.Environment, fields: dict, result: dict | None, status: int = 200) -> HTMLResponse:
    shown = [view(r) for r in result.get("results", [])] if result else []
    text = templates.get_template("page.html.j2").render(
        fields=fields, result=result, shown=shown, specs=builtin_names(), notations=list(READINGS),
        max_body_kb=MAX_BODY // 1024, max_lines=MAX_LINES)
    return HTMLResponse(text, status_code=status, headers=SECURITY)


def _number(x) -> str:
    return "undefined" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.6g}"


def view(r: dict) -> dict:
    """What the template shows of one verdict: the witness's values as rows, a matrix's entries marked wrong."""
    w = r.get("witness")
    out = {"error": None, "reason": None, "shape_error": None, "repair": None, "other_repairs": [],
           "wrong_entries": [], "holding_entries": [], **r, "values": [], "neurons": [], "matrices": None,
           "scalar": None}
    if not w:
        return out
    out["values"] = [(k, _number(v)) for k, v in w["values"].items()]
    out["neurons"] = [(k, _number(v)) for k, v in w["neurons"].items()]
    if "entry" in w:
        wrong = {tuple(e["entry"]) for e in r["wrong_entries"]}
        names = {tuple(e["entry"]): e["name"] for e in r["wrong_entries"] + r["holding_entries"]}
        out["matrices"] = [
            {"title": title, "rows": [[{"value": _number(x), "wrong": claim and (i, j) in wrong,
                                        "name": names.get((i, j), "")}
                                       for j, x in enumerate(row)] for i, row in enumerate(w[key])]}
            for title, key, claim in (("the truth", "lhs", False), ("the claim", "rhs", True))]
    else:
        out["scalar"] = (_number(w["lhs"]), _number(w["rhs"]))
    return out
