"""``python -m fastopt playground --serve``: the interactive playground, a page and a small JSON API.

The server is the standard library's threading HTTP server, bound to 127.0.0.1.  It serves one page
(``static/``: HTML, CSS and JavaScript written for it, no third-party code) and computes every step
with fastopt's optimizers (:func:`fastopt.playground.run_one`): the page only draws what it is sent.

JSON API
--------
Every answer under ``/api/`` but the CSV is JSON, and every error, there or elsewhere, is
``{"error": message}``: with a 4xx status for a request refused, 501 or 505 for an unknown method or
HTTP version, and 500 for a bug in the server.

``GET /api/config``
    The surfaces (name, formula, note, default start and steps, plot window, minima, default
    learning rate of each optimizer, whether the contours are log-spaced), the optimizers with
    the hyperparameters each exposes and their defaults, the knobs' ranges, the colours and the
    limits (``max_steps``).
``GET /api/grid?surface=NAME``
    The surface's loss on a :data:`GRID_POINTS` x :data:`GRID_POINTS` grid over its window:
    ``{"surface", "x", "y", "z"}``, ``z[i][j]`` at ``(x[j], y[i])``.
``POST /api/run`` (``Content-Type: application/json``)
    Body ``{"surface": NAME, "start": [x, y], "steps": N, "optimizers": [{"name": NAME, "lr": LR,
    "hyperparameters": {"momentum": M, "betas": [B1, B2], ...}}, ...]}``; everything but
    ``surface`` and the optimizers' names may be left out (the surface's defaults).  Answers
    ``{"surface", "start", "steps", "trajectories": [...]}``, each trajectory ``{"optimizer",
    "lr", "hyperparameters", "points": [[x, y], ...], "losses": [...], "steps", "diverged_at"}``:
    the start and the point after each step, up to the first step that produced a non-finite
    value (``diverged_at``, else null).
``POST /api/csv``
    The same body; answers the trajectories as CSV (``optimizer,step,x,y,loss``, as ``--csv``).

Refused: a body that is not JSON (NaN and Infinity included) or over :data:`MAX_BODY` bytes,
unknown surfaces, optimizers or hyperparameters, values of the wrong type or out of range, more
than :data:`MAX_STEPS` steps, an optimizer named twice; and, with 403, any request whose ``Host``
or ``Origin`` is not this server's own loopback address (a page elsewhere cannot drive it, even
through DNS rebinding).
"""
from __future__ import annotations

import http.server
import io
import json
import math
import re
import sys
import threading
import webbrowser
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any, NoReturn, TypeGuard
from urllib.parse import SplitResult, parse_qs, urlencode, urlsplit

import numpy as np

import fastopt
from fastopt.playground import hyperparameters as knobs
from fastopt.playground.plot import COLORS
from fastopt.playground.report import write_csv
from fastopt.playground.runner import DEFAULT_OPTIMIZERS, OPTIMIZERS, check_start, run_one
from fastopt.playground.surfaces import SURFACES

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from fastopt.playground.runner import Trajectory
    from fastopt.playground.surfaces import Surface

    # An optimizer of a run request, checked: (name, lr, hyperparameters).
    _OptimizerSpec = tuple[str, float, dict[str, float | tuple[float, ...]]]

__all__ = ["DEFAULT_PORT", "GRID_POINTS", "MAX_BODY", "MAX_STEPS", "PlaygroundServer", "RequestError", "config",
           "grid", "make_server", "parse_run", "run_request", "serve"]

DEFAULT_PORT = 8765
MAX_STEPS = 5000    # a full request (21 optimizers) then takes about 2 s and answers about 6 MB
MAX_BODY = 64 * 1024
GRID_POINTS = 161
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/playground.js": ("playground.js", "text/javascript; charset=utf-8"),
          "/playground.css": ("playground.css", "text/css; charset=utf-8")}
# The page is the server's own: no script, style, frame or connection elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class RequestError(ValueError):
    """A request the server refuses: ``status`` and a message for the page.

    Parameters
    ----------
    message : str
        What the page shows.
    status : int, default 400
        The HTTP status of the answer.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def config() -> dict[str, object]:
    """``GET /api/config``: what the page needs to build its controls."""
    surfaces = [{"name": s.name, "formula": s.formula, "note": s.note, "start": list(s.start), "steps": s.steps,
                 "window": list(s.window), "minima": [list(m) for m in s.minima], "min_value": s.min_value,
                 "lrs": s.lrs, "log_levels": s.log_levels} for s in SURFACES.values()]
    return {"version": fastopt.__version__, "surfaces": surfaces,
            "optimizers": [knobs.describe(name) for name in OPTIMIZERS],
            "default_optimizers": list(DEFAULT_OPTIMIZERS),
            "knobs": {name: knob.as_json() for name, knob in knobs.KNOBS.items()},
            "colors": list(COLORS), "limits": {"max_steps": MAX_STEPS, "grid_points": GRID_POINTS}}


def _surface(name: object) -> Surface:
    if not isinstance(name, str) or name not in SURFACES:
        raise RequestError(f"unknown surface {name!r}; choose from {', '.join(SURFACES)}")
    return SURFACES[name]


def _finite_or_none(values: NDArray[np.float64]) -> list[list[float | None]]:
    return [[float(v) if math.isfinite(v) else None for v in row] for row in values]


def grid(name: object) -> dict[str, object]:
    """``GET /api/grid?surface=NAME``: the loss over the surface's window (non-finite values as null).

    Parameters
    ----------
    name : str
        A key of :data:`fastopt.playground.SURFACES` (anything else is a :class:`RequestError`).
    """
    surface = _surface(name)
    xmin, xmax, ymin, ymax = surface.window
    x, y = np.linspace(xmin, xmax, GRID_POINTS), np.linspace(ymin, ymax, GRID_POINTS)
    with np.errstate(all="ignore"):
        z = surface.value(*np.meshgrid(x, y))
    return {"surface": surface.name, "x": x.tolist(), "y": y.tolist(), "z": _finite_or_none(z)}


def _reject_constant(name: str) -> NoReturn:
    raise RequestError(f"the request is not valid JSON: {name} is not a JSON number")


def _parse_int(text: str) -> int | float:
    # Integers beyond any count the API takes are read as floats (inf beyond 1e308), which every field then
    # refuses by name; as ints they would overflow float() (an OverflowError) or Python's digit limit.
    return int(text) if len(text) <= 18 else float(text)


def _loads(body: bytes | str) -> object:
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_int=_parse_int)
    except RequestError:
        raise
    except (ValueError, RecursionError) as exc:  # bad UTF-8 and an over-long integer are ValueErrors too
        raise RequestError(f"the request is not valid JSON: {exc}") from None


def _number(value: object) -> TypeGuard[int | float]:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _start(surface: Surface, value: object) -> tuple[float, ...]:
    if value is None:
        return tuple(surface.start)
    if not (isinstance(value, list) and len(value) == 2 and all(_number(v) and math.isfinite(v) for v in value)):
        raise RequestError(f"start must be a list of two finite numbers [x, y], got {value!r}")
    try:
        x, y = check_start(surface, value)
    except ValueError as exc:  # the loss overflows there
        raise RequestError(str(exc)) from None
    return float(x), float(y)


def _steps(surface: Surface, value: object) -> int:
    if value is None:
        return surface.steps
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_STEPS:
        raise RequestError(f"steps must be an integer from 1 to {MAX_STEPS}, got {value!r}")
    return value


def _optimizer(surface: Surface, spec: object) -> _OptimizerSpec:
    if not isinstance(spec, dict):
        raise RequestError(f"each optimizer must be an object {{\"name\": ..., \"lr\": ...}}, got {spec!r}")
    unknown = sorted(set(spec) - {"name", "lr", "hyperparameters"})
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(map(repr, unknown))} in optimizer {spec.get('name')!r}; "
                           "an optimizer takes name, lr and hyperparameters")
    name = spec.get("name")
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise RequestError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    lr = spec.get("lr")
    try:
        lr = surface.lrs[name] if lr is None else knobs.LR.check(name, lr)
        hyper = knobs.check_hyperparameters(name, spec.get("hyperparameters", {}))
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    return name, lr, hyper


def parse_run(body: bytes | str) -> tuple[Surface, tuple[float, ...], int, list[_OptimizerSpec]]:
    """Check a ``POST /api/run`` body (bytes or str); return ``(surface, start, steps, [(name, lr, hyper)])``.

    Parameters
    ----------
    body : bytes or str
        The JSON request (the module docstring describes it).

    Raises
    ------
    RequestError
        For anything the module docstring lists as refused.
    """
    request = _loads(body)
    if not isinstance(request, dict):
        raise RequestError(f"the request must be a JSON object, got {type(request).__name__}")
    unknown = sorted(set(request) - {"surface", "start", "steps", "optimizers"})
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(map(repr, unknown))}; "
                           "a run takes surface, start, steps and optimizers")
    surface = _surface(request.get("surface"))
    start = _start(surface, request.get("start"))
    steps = _steps(surface, request.get("steps"))
    specs = request.get("optimizers")
    if not isinstance(specs, list) or not specs:
        raise RequestError("optimizers must be a non-empty list of {\"name\": ..., \"lr\": ...} objects")
    optimizers = [_optimizer(surface, spec) for spec in specs]
    names = [name for name, _, _ in optimizers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RequestError(f"optimizer(s) {', '.join(twice)} named more than once")
    return surface, start, steps, optimizers


def run_request(body: bytes | str) -> tuple[tuple[Surface, tuple[float, ...], int], list[Trajectory]]:
    """Run a ``POST /api/run`` body: the list of :class:`~fastopt.playground.Trajectory`, and the checked request.

    Parameters
    ----------
    body : bytes or str
        As for :func:`parse_run`.

    Raises
    ------
    RequestError
        What :func:`parse_run` refuses, and a combination fastopt's optimizer refuses.
    """
    surface, start, steps, optimizers = parse_run(body)
    trajectories = []
    for name, lr, hyper in optimizers:
        try:
            trajectories.append(run_one(surface, name, lr, steps, start, hyper))
        except ValueError as exc:  # a combination fastopt refuses (e.g. Nesterov without momentum)
            raise RequestError(f"{name}: {exc}") from None
    return (surface, start, steps), trajectories


def _trajectory_json(t: Trajectory) -> dict[str, object]:
    hyper = {k: list(v) if isinstance(v, tuple) else v for k, v in t.hyperparameters.items()}
    return {"optimizer": t.optimizer, "lr": t.lr, "hyperparameters": hyper, "points": t.points.tolist(),
            "losses": t.losses.tolist(), "steps": t.steps, "diverged_at": t.diverged_at}


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "fastopt-playground"
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a connection may stay silent: a client that sends less than it announced lets go
    server: PlaygroundServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the command prints its URL, not every request
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, extra: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for key, value in (("Content-Type", content_type), ("Content-Length", str(len(body))),
                           *SECURITY_HEADERS.items(), *extra):
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload, allow_nan=False).encode(), "application/json")

    def _error(self, exc: RequestError) -> None:
        # An error may leave a request body unread, which would be parsed as the next request: close.
        self.close_connection = True
        self._send(exc.status, json.dumps({"error": str(exc)}).encode(), "application/json",
                   [("Connection", "close")])

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own errors (a malformed request line, an unknown method, ...) as JSON too."""
        self.log_error("code %d, message %s", code, message)
        self._error(RequestError(message or http.HTTPStatus(code).phrase, code))

    def _check_origin(self, url: SplitResult) -> None:
        """Only this server's own loopback names, in Host, in an absolute request target, and in Origin."""
        own = self.server.own_hosts
        if self.headers.get("Host") not in own:
            raise RequestError(f"this server answers only requests for {' or '.join(own)}", 403)
        if url.netloc and url.netloc not in own:
            raise RequestError(f"this server answers only requests for {' or '.join(own)}", 403)
        origin = self.headers.get("Origin")
        if origin is not None and origin not in {f"http://{h}" for h in own}:
            raise RequestError(f"requests from the page at {origin} are refused", 403)

    def _dispatch(self, handle: Callable[[SplitResult], None]) -> None:
        try:
            try:
                url = urlsplit(self.path)
            except ValueError as exc:  # e.g. an unclosed IPv6 bracket
                raise RequestError(f"malformed request target {self.path!r}: {exc}") from None
            self._check_origin(url)
            handle(url)
        except RequestError as exc:
            self._error(exc)
        except TimeoutError:  # the client announced a body it did not send
            self._error(RequestError(f"the request body did not arrive within {self.timeout} s", 408))
        except Exception as exc:  # noqa: BLE001 -- the server stays up; the page shows what went wrong
            self._error(RequestError(f"internal error: {type(exc).__name__}: {exc}", 500))

    def do_GET(self) -> None:
        self._dispatch(self._get)

    do_HEAD = do_GET

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def _refuse_method(self) -> None:
        self._dispatch(self._not_allowed)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def _not_allowed(self, url: SplitResult) -> NoReturn:
        raise RequestError(f"method {self.command} is not allowed on {url.path}", 405)

    def _get(self, url: SplitResult) -> None:
        if url.path in STATIC:
            filename, content_type = STATIC[url.path]
            body = resources.files("fastopt.playground").joinpath("static", filename).read_bytes()
            self._send(200, body, content_type)
        elif url.path == "/api/config":
            self._json(200, config())
        elif url.path == "/api/grid":
            names = parse_qs(url.query).get("surface", [None])
            self._json(200, grid(names[0]))
        elif url.path in ("/api/run", "/api/csv"):
            raise RequestError(f"{url.path} takes POST with a JSON body", 405)
        else:
            raise RequestError(f"no such page: {url.path}", 404)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            raise RequestError("send the body with a Content-Length, not chunked", 411)
        length = self.headers.get("Content-Length")
        if length is None or not re.fullmatch(r"[0-9]{1,12}", length):
            raise RequestError("a POST needs a Content-Length (a number of bytes)", 411)
        if int(length) > MAX_BODY:
            raise RequestError(f"the request body is {length} bytes; at most {MAX_BODY} are accepted", 413)
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
        body = self.rfile.read(int(length))
        if content_type != "application/json":
            raise RequestError(f"send the body as application/json, not {content_type or 'no Content-Type'}", 415)
        return body

    def _post(self, url: SplitResult) -> None:
        if url.path not in ("/api/run", "/api/csv"):
            raise RequestError(f"no such endpoint: POST {url.path}", 404 if not url.path.startswith("/api/") else 405)
        (surface, start, steps), trajectories = run_request(self._body())
        if url.path == "/api/run":
            self._json(200, {"surface": surface.name, "start": list(start), "steps": steps,
                             "trajectories": [_trajectory_json(t) for t in trajectories]})
        else:
            text = io.StringIO(newline="")
            write_csv(text, trajectories)
            self._send(200, text.getvalue().encode(), "text/csv; charset=utf-8",
                       [("Content-Disposition", f'attachment; filename="fastopt-playground-{surface.name}.csv"')])


class PlaygroundServer(http.server.ThreadingHTTPServer):
    """The playground's HTTP server on 127.0.0.1 (``server_address[1]`` is the port, also when asked for 0).

    Parameters
    ----------
    port : int, default DEFAULT_PORT
        The port to listen on; 0 takes any free one.
    verbose : bool, default False
        Log every request to stderr.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # a page that fires requests while a long run holds the GIL is not reset

    def __init__(self, port: int = DEFAULT_PORT, verbose: bool = False) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.verbose = verbose
        self.port = self.server_address[1]
        self.own_hosts: tuple[str, ...] = (f"127.0.0.1:{self.port}", f"localhost:{self.port}")
        if self.port == 80:  # where browsers leave the port out
            self.own_hosts += ("127.0.0.1", "localhost")

    def url(self, **query: str) -> str:
        """The page's address; ``query`` (surface=..., optimizers=...) preselects the page's controls."""
        tail = "?" + urlencode(query) if query else ""
        return f"http://127.0.0.1:{self.port}/{tail}"


def make_server(port: int = DEFAULT_PORT, verbose: bool = False) -> PlaygroundServer:
    """A :class:`PlaygroundServer`, not yet serving (call ``serve_forever``); port 0 takes any free one.

    Parameters
    ----------
    port, verbose
        As for :class:`PlaygroundServer`.

    Raises
    ------
    OSError
        If the port cannot be bound (in use, or privileged).
    """
    return PlaygroundServer(port, verbose)


def _open_browser(url: str, out: Callable[[str], object]) -> None:
    try:
        opened = webbrowser.open(url)
    except Exception:  # noqa: BLE001 -- no browser is no error: the URL is printed
        opened = False
    if not opened:
        out("no browser found here: open the address above in one")


def serve(port: int = DEFAULT_PORT, open_browser: bool = True, query: Mapping[str, str] | None = None,
          out: Callable[[str], object] = print, verbose: bool = False) -> int:
    """Serve the playground until interrupted (Ctrl-C); return the exit status.

    Prints the URL; opens it in a browser when ``open_browser`` and one is available.

    Parameters
    ----------
    port : int, default DEFAULT_PORT
        The port (0: any free one); a port that cannot be bound gives status 2 and a message.
    open_browser : bool, default True
        Open the page in a browser once serving.
    query : mapping, optional
        ``surface=`` and ``optimizers=`` for the page's address: its controls start with them.
    out : callable, default print
        Where the address and the notes go.
    verbose : bool, default False
        Log every request to stderr.
    """
    try:
        server = make_server(port, verbose)
    except OSError as exc:
        print(f"playground: error: cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}); "
              "choose another port with --port N (0: any free port)", file=sys.stderr)
        return 2
    url = server.url(**(query or {}))
    out(f"fastopt playground at {url}  (Ctrl-C stops it)")
    # The browser is opened once serving: a console browser may not return until it has loaded the page.
    opener = threading.Timer(0.2, _open_browser, (url, out))
    opener.daemon = True
    with server:
        try:
            if open_browser:
                opener.start()
            server.serve_forever()
        except KeyboardInterrupt:
            out("playground stopped")
        finally:
            opener.cancel()
    return 0
