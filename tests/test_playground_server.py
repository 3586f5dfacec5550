"""The interactive playground's server: its page, its JSON API, and what it refuses (standard-library client)."""
import csv
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from fastopt.playground import OPTIMIZERS, SURFACES, run_one, write_csv
from fastopt.playground import hyperparameters as knobs
from fastopt.playground.server import GRID_POINTS, MAX_BODY, MAX_STEPS


def request(server, method, path, body=None, headers=None):
    """``(status, headers, body bytes)`` of one request; ``body`` (not bytes) is sent as JSON."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        sent = {"Content-Type": "application/json"} if body is not None else {}
        sent.update(headers or {})
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def api(server, path, body=None):
    status, headers, data = request(server, "POST" if body is not None else "GET", path, body)
    assert status == 200, data
    assert headers["Content-Type"] == "application/json"
    return json.loads(data)


def refused(server, body, path="/api/run", method="POST", headers=None):
    """The status and error message of a refused request; the server still answers afterwards."""
    status, got, data = request(server, method, path, body, headers)
    assert got["Content-Type"] == "application/json"
    error = json.loads(data)["error"]
    assert isinstance(error, str) and error
    assert request(server, "GET", "/api/config")[0] == 200
    return status, error


# --- the page -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, content_type, marker", [
    ("/", "text/html", b'<canvas id="plot"'),
    ("/playground.js", "text/javascript", b"/api/run"),
    ("/playground.css", "text/css", b"#readout"),
])
def test_the_page_is_served_from_the_package(playground_server, path, content_type, marker):
    status, headers, body = request(playground_server, "GET", path)
    assert status == 200
    assert headers["Content-Type"].startswith(content_type)
    assert marker in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_loads_nothing_from_elsewhere():
    """No CDN: the static files name no other address (the CSP would block it anyway)."""
    static = resources.files("fastopt.playground").joinpath("static")
    names = sorted(f.name for f in static.iterdir())
    assert names == ["index.html", "playground.css", "playground.js"]
    for name in names:
        assert re.search(r"(https?:)?//[a-z0-9]", static.joinpath(name).read_text().replace("// ", "")) is None, name


def test_head_answers_headers_only(playground_server):
    status, headers, body = request(playground_server, "HEAD", "/")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


# --- the API --------------------------------------------------------------------------------------------


def test_config_lists_every_surface_and_optimizer(playground_server):
    config = api(playground_server, "/api/config")
    assert [s["name"] for s in config["surfaces"]] == list(SURFACES)
    for got, surface in zip(config["surfaces"], SURFACES.values()):
        assert got["start"] == list(surface.start) and got["window"] == list(surface.window)
        assert got["lrs"] == surface.lrs and got["steps"] == surface.steps
    assert [o["name"] for o in config["optimizers"]] == list(OPTIMIZERS)
    for got in config["optimizers"]:
        assert got["class"] == f"fastopt.{OPTIMIZERS[got['name']][0]}"
        assert got["hyperparameters"] == knobs.defaults(got["name"])
    assert config["limits"]["max_steps"] == MAX_STEPS
    assert set(config["knobs"]) >= {"lr", "momentum", "beta"}
    assert config["knobs"]["lr"]["scale"] == "log"


def test_exposed_defaults_are_the_classes_and_the_playgrounds():
    assert knobs.defaults("momentum") == {"momentum": 0.9, "weight_decay": 0.0}
    assert knobs.defaults("adam") == {"betas": [0.9, 0.999], "weight_decay": 0.0}
    assert knobs.defaults("ademamix")["betas"] == [0.9, 0.999, 0.9999]
    assert knobs.defaults("muon") == {"momentum": 0.95, "weight_decay": 0.0}  # the playground turns decay off
    assert set(knobs.EXPOSED) == set(OPTIMIZERS)


def test_grid_is_the_surface_on_its_window(playground_server):
    surface = SURFACES["himmelblau"]
    got = api(playground_server, "/api/grid?surface=himmelblau")
    x, y, z = np.array(got["x"]), np.array(got["y"]), np.array(got["z"], dtype=float)
    assert x.shape == y.shape == (GRID_POINTS,) and z.shape == (GRID_POINTS, GRID_POINTS)
    assert (x[0], x[-1], y[0], y[-1]) == surface.window
    np.testing.assert_array_equal(z, surface.value(*np.meshgrid(x, y)))


def test_run_is_the_librarys_run(playground_server):
    """Every point and loss the page gets is fastopt's own, to the bit."""
    body = {"surface": "rosenbrock", "start": [-1.0, 1.5], "steps": 60,
            "optimizers": [{"name": "adam", "lr": 0.05, "hyperparameters": {"betas": [0.8, 0.99]}},
                           {"name": "nesterov", "lr": 1e-3, "hyperparameters": {"momentum": 0.5}},
                           {"name": "ademamix", "lr": 0.1, "hyperparameters": {"betas": [0.9, 0.99, 0.999]}},
                           {"name": "muon", "lr": 0.02}]}
    got = api(playground_server, "/api/run", body)
    assert (got["surface"], got["start"], got["steps"]) == ("rosenbrock", [-1.0, 1.5], 60)
    hypers = [{"betas": (0.8, 0.99)}, {"momentum": 0.5}, {"betas": (0.9, 0.99, 0.999)}, {}]
    for t, spec, hyper in zip(got["trajectories"], body["optimizers"], hypers):
        want = run_one("rosenbrock", spec["name"], spec["lr"], 60, (-1.0, 1.5), hyper)
        assert t["optimizer"] == spec["name"] and t["lr"] == spec["lr"] and t["steps"] == 60
        assert t["diverged_at"] is None
        assert t["hyperparameters"] == {k: list(v) if isinstance(v, tuple) else v for k, v in hyper.items()}
        np.testing.assert_array_equal(t["points"], want.points)
        np.testing.assert_array_equal(t["losses"], want.losses)


def test_hyperparameters_change_the_path(playground_server):
    def final(momentum):
        body = {"surface": "ravine", "steps": 50,
                "optimizers": [{"name": "momentum", "hyperparameters": {"momentum": momentum}}]}
        return api(playground_server, "/api/run", body)["trajectories"][0]["losses"][-1]

    assert final(0.0) != final(0.9)


def test_run_defaults_are_the_surfaces(playground_server):
    surface = SURFACES["beale"]
    got = api(playground_server, "/api/run", {"surface": "beale", "optimizers": [{"name": "rmsprop"}]})
    assert got["start"] == list(surface.start) and got["steps"] == surface.steps
    t = got["trajectories"][0]
    assert t["lr"] == surface.lrs["rmsprop"] and t["hyperparameters"] == {}
    np.testing.assert_array_equal(t["losses"], run_one(surface, "rmsprop", surface.lrs["rmsprop"], surface.steps,
                                                       surface.start).losses)


def test_divergence_is_reported_not_hidden(playground_server):
    got = api(playground_server, "/api/run", {"surface": "rosenbrock", "steps": 200,
                                              "optimizers": [{"name": "sgd", "lr": 50.0}, {"name": "adam"}]})
    diverged, calm = got["trajectories"]
    assert diverged["diverged_at"] is not None and 1 <= diverged["diverged_at"] <= 200
    assert len(diverged["points"]) == len(diverged["losses"]) == diverged["diverged_at"]
    assert np.all(np.isfinite(diverged["points"])) and np.all(np.isfinite(diverged["losses"]))
    assert calm["diverged_at"] is None and len(calm["points"]) == 201


def test_csv_is_the_commands_csv(playground_server):
    body = {"surface": "saddle", "steps": 25, "optimizers": [{"name": "sgd"}, {"name": "lion", "lr": 0.05}]}
    status, headers, data = request(playground_server, "POST", "/api/csv", body)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert 'filename="fastopt-playground-saddle.csv"' in headers["Content-Disposition"]
    surface = SURFACES["saddle"]
    want = io.StringIO(newline="")
    write_csv(want, [run_one(surface, "sgd", surface.lrs["sgd"], 25, surface.start),
                     run_one(surface, "lion", 0.05, 25, surface.start)])
    assert data.decode() == want.getvalue()
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert len(rows) == 2 * 26 and rows[0]["optimizer"] == "sgd" and rows[-1]["step"] == "25"


# --- what it refuses ------------------------------------------------------------------------------------

GOOD = {"surface": "beale", "steps": 10, "optimizers": [{"name": "adam"}]}


def with_(**changes):
    return json.dumps({**GOOD, **changes})


def optimizer(**spec):
    return with_(optimizers=[{"name": "adam", **spec}])


BAD_REQUESTS = {
    "malformed JSON": ("{surface: beale", "not valid JSON"),
    "not UTF-8": (b'{"surface": "\xff"}', "not valid JSON"),
    "not an object": ("[1, 2]", "must be a JSON object"),
    "NaN": ('{"surface": "beale", "optimizers": [{"name": "adam", "lr": NaN}]}', "NaN is not a JSON number"),
    "Infinity": ('{"surface": "beale", "steps": Infinity}', "Infinity is not a JSON number"),
    "overflowing number": ('{"surface": "beale", "optimizers": [{"name": "adam", "lr": 1e999}]}', "got inf"),
    "deep nesting": ("[" * 50_000, "not valid JSON"),
    "huge integer": ('{"surface": "beale", "steps": 1' + "0" * 5000 + "}", "steps must be an integer from 1 to"),
    "huge integer lr": ('{"surface": "beale", "optimizers": [{"name": "adam", "lr": 1' + "0" * 400 + "}]}",
                        "lr of adam must be in (0, 100], got inf"),
    "huge integer start": ('{"surface": "beale", "start": [1' + "0" * 400 + ", 0], "
                           '"optimizers": [{"name": "adam"}]}', "start must be a list of two finite numbers"),
    "huge integer beta": ('{"surface": "beale", "optimizers": [{"name": "adam", "hyperparameters": '
                          '{"betas": [0.9, 1' + "0" * 400 + "]}}]}", "beta of adam must be in [0, 1), got inf"),
    "unknown field": (with_(speed=3), "unknown field(s) 'speed'"),
    "no surface": (json.dumps({"optimizers": [{"name": "adam"}]}), "unknown surface None"),
    "unknown surface": (with_(surface="everest"), "unknown surface 'everest'; choose from rosenbrock"),
    "unknown optimizer": (with_(optimizers=[{"name": "adamz"}]), "unknown optimizer 'adamz'; choose from sgd"),
    "optimizer not an object": (with_(optimizers=["adam"]), "each optimizer must be an object"),
    "no optimizers": (with_(optimizers=[]), "optimizers must be a non-empty list"),
    "optimizer named twice": (with_(optimizers=[{"name": "adam"}, {"name": "adam", "lr": 0.1}]),
                              "adam named more than once"),
    "unknown optimizer field": (optimizer(beta1=0.9), "unknown field(s) 'beta1' in optimizer 'adam'"),
    "negative lr": (optimizer(lr=-0.1), "lr of adam must be in (0, 100], got -0.1"),
    "zero lr": (optimizer(lr=0), "lr of adam must be in (0, 100], got 0.0"),
    "huge lr": (optimizer(lr=1e6), "lr of adam must be in (0, 100], got 1000000.0"),
    "lr as text": (optimizer(lr="0.1"), "lr of adam must be a number, got '0.1'"),
    "lr as bool": (optimizer(lr=True), "lr of adam must be a number, got True"),
    "unknown hyperparameter": (optimizer(hyperparameters={"momentum": 0.9}),
                               "adam has no hyperparameter 'momentum' here; it takes lr and betas, weight_decay"),
    "hyperparameters not an object": (optimizer(hyperparameters=[0.9]), "must be an object"),
    "betas too short": (optimizer(hyperparameters={"betas": [0.9]}), "betas of adam must be a list of 2 numbers"),
    "beta out of range": (optimizer(hyperparameters={"betas": [0.9, 1.0]}), "beta of adam must be in [0, 1), got 1.0"),
    "negative beta": (optimizer(hyperparameters={"betas": [-0.1, 0.9]}), "beta of adam must be in [0, 1)"),
    "huge weight decay": (optimizer(hyperparameters={"weight_decay": 50}), "weight_decay of adam must be in [0, 1]"),
    "momentum of one": (with_(optimizers=[{"name": "sgd", "hyperparameters": {"momentum": 1}}]),
                        "momentum of sgd must be in [0, 1), got 1.0"),
    "refused by fastopt": (with_(optimizers=[{"name": "nesterov", "hyperparameters": {"momentum": 0}}]),
                           "nesterov: Nesterov momentum requires a momentum"),
    "zero steps": (with_(steps=0), f"steps must be an integer from 1 to {MAX_STEPS}, got 0"),
    "absurd steps": (with_(steps=10**9), f"steps must be an integer from 1 to {MAX_STEPS}, got 1000000000"),
    "fractional steps": (with_(steps=10.5), "steps must be an integer"),
    "steps as bool": (with_(steps=True), "steps must be an integer"),
    "start of three": (with_(start=[1, 2, 3]), "start must be a list of two finite numbers"),
    "start as text": (with_(start="1,2"), "start must be a list of two finite numbers"),
    "start where the loss overflows": (with_(start=[1e200, 1e200]), "the loss of beale is not finite at the start"),
}


@pytest.mark.parametrize("body, message", BAD_REQUESTS.values(), ids=BAD_REQUESTS)
def test_bad_requests_get_a_clear_error(playground_server, body, message):
    for path in ("/api/run", "/api/csv"):
        status, error = refused(playground_server, body, path)
        assert status == 400
        assert message in error


def test_bodies_are_bounded_and_typed(playground_server):
    status, error = refused(playground_server, "x" * (MAX_BODY + 1))
    assert status == 413 and f"at most {MAX_BODY}" in error
    status, error = refused(playground_server, json.dumps(GOOD), headers={"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in error
    connection = http.client.HTTPConnection("127.0.0.1", playground_server.port, timeout=60)
    try:  # no Content-Length
        connection.putrequest("POST", "/api/run")
        connection.putheader("Content-Type", "application/json")
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]
    finally:
        connection.close()


@pytest.mark.parametrize("headers", [{"Host": "example.com"}, {"Host": "evil.test:80"}, {"Host": "127.0.0.1"},
                                     {"Host": "LOCALHOST:1"}, {"Origin": "http://evil.test"}, {"Origin": "null"},
                                     {"Origin": "http://127.0.0.1:1"}, {"Origin": "https://127.0.0.1"}],
                         ids=["host", "host-port", "host-without-port", "other-port", "origin", "null-origin",
                              "origin-other-port", "origin-https"])
def test_requests_for_other_hosts_are_refused(playground_server, headers):
    """A page elsewhere (or a DNS-rebound name) cannot read or drive the server."""
    for method, path, body in (("GET", "/", None), ("GET", "/api/config", None), ("POST", "/api/run", GOOD)):
        status, error = refused(playground_server, body, path, method, headers)
        assert status == 403 and ("refused" in error or "answers only" in error), error


def raw(server, data):
    """Send raw bytes; the status line and the JSON error of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    if answer.startswith(b"{"):  # an answer to a request line without a version (HTTP/0.9) has no head
        return "", json.loads(answer)["error"]
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), json.loads(body)["error"]


def test_a_malformed_target_or_a_missing_body(playground_server, monkeypatch):
    host = f"127.0.0.1:{playground_server.port}".encode()
    status, error = raw(playground_server, b"GET http://[x/ HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    assert " 400 " in status and "malformed request target" in error
    from fastopt.playground import server as server_module

    monkeypatch.setattr(server_module._Handler, "timeout", 0.5)
    status, error = raw(playground_server, b"POST /api/run HTTP/1.1\r\nHost: " + host
                        + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    assert " 408 " in status and "did not arrive" in error


def test_a_request_without_host_or_for_another_authority_is_refused(playground_server):
    host = f"127.0.0.1:{playground_server.port}".encode()
    status, error = raw(playground_server, b"GET /api/config HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert " 403 " in status and "answers only" in error
    status, error = raw(playground_server, b"GET http://evil.test/api/config HTTP/1.1\r\nHost: " + host
                        + b"\r\nConnection: close\r\n\r\n")
    assert " 403 " in status and "answers only" in error


@pytest.mark.parametrize("request_line, code", [(b"FROB / HTTP/1.1", 501), (b"GET / HTTP/1.1 extra", None),
                                                (b"GET / HTTP/9.9", None), (b"nonsense", None)])
def test_malformed_requests_get_json_errors_too(playground_server, request_line, code):
    """Errors the base class finds are JSON as well (without a status line where the request had no version)."""
    status, error = raw(playground_server, request_line + b"\r\nConnection: close\r\n\r\n")
    assert error and (code is None or f" {code} " in status)


@pytest.mark.parametrize("length", ["\u00b2", "-1", "1" * 30])
def test_a_content_length_that_is_not_a_number(playground_server, length):
    host = f"127.0.0.1:{playground_server.port}"
    data = (f"POST /api/run HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()
    status, error = raw(playground_server, data)
    assert " 411 " in status and "Content-Length" in error


def test_its_own_names_are_served(playground_server):
    for host in (f"127.0.0.1:{playground_server.port}", f"localhost:{playground_server.port}"):
        origin = {"Origin": f"http://{host}"}
        assert request(playground_server, "POST", "/api/run", GOOD, {"Host": host, **origin})[0] == 200


def test_it_listens_on_loopback_only(playground_server):
    assert playground_server.server_address[0] == "127.0.0.1"


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/nothing", 404), ("GET", "/api/run", 405), ("POST", "/api/config", 405), ("POST", "/", 404),
    ("PUT", "/api/run", 405), ("DELETE", "/", 405),
])
def test_unknown_paths_and_methods(playground_server, method, path, status):
    got, error = refused(playground_server, json.dumps(GOOD) if method in ("POST", "PUT") else None, path, method)
    assert got == status, error


def test_grid_of_an_unknown_surface(playground_server):
    status, error = refused(playground_server, None, "/api/grid?surface=moon", "GET")
    assert status == 400 and "unknown surface 'moon'" in error


# --- the command ----------------------------------------------------------------------------------------


def test_serve_command_prints_its_url_and_stops_on_interrupt():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "fastopt", "playground", "--serve", "--port", "0",
                                "--no-browser", "--surface", "beale"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/\?surface=beale", line)
        assert match, line
        connection = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=60)
        connection.request("GET", "/api/config")
        assert connection.getresponse().status == 200
        connection.close()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, err
    assert "playground stopped" in out


def test_serve_refuses_a_busy_port(capsys):
    from fastopt.playground import cli

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = cli_args("--serve", "--port", str(port), "--no-browser")
        assert cli.main(args) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def cli_args(*argv):
    import argparse

    from fastopt.playground import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_serve_opens_the_browser_once_serving(monkeypatch):
    """The browser is opened from another thread after the server listens; no browser is said plainly."""
    import threading

    from fastopt.playground import server as server_module

    opened, printed = [], []

    def fake_open(url):
        opened.append(url)
        status = http.client.HTTPConnection("127.0.0.1", int(url.split(":")[2].split("/")[0]), timeout=60)
        status.request("GET", "/api/config")
        opened.append(status.getresponse().status)
        status.close()
        return False

    def out(line):
        printed.append(line)
        if "no browser found" in line:
            raise_interrupt.set()

    raise_interrupt = threading.Event()
    monkeypatch.setattr(server_module.webbrowser, "open", fake_open)
    original = server_module.PlaygroundServer.serve_forever

    def serve_until_opened(self, poll_interval=0.05):
        thread = threading.Thread(target=original, args=(self, poll_interval), daemon=True)
        thread.start()
        raise_interrupt.wait(60)
        self.shutdown()
        thread.join(10)

    monkeypatch.setattr(server_module.PlaygroundServer, "serve_forever", serve_until_opened)
    assert server_module.serve(port=0, query={"surface": "ravine"}, out=out) == 0
    assert opened[0].endswith("/?surface=ravine") and opened[1] == 200
    assert any("no browser found" in line for line in printed)


@pytest.mark.parametrize("argv, message", [
    (("--serve", "--lr", "0.1"), "--lr do not apply with --serve"),
    (("--serve", "--tol", "0.1", "--png", "a.png"), "--tol, --png do not apply with --serve"),
    (("--serve", "--steps", "5", "--no-png"), "--steps, --no-png do not apply with --serve"),
    (("--port", "9000"), "--port and --no-browser apply only with --serve"),
    (("--no-browser",), "--port and --no-browser apply only with --serve"),
])
def test_serve_options_that_do_not_go_together(capsys, argv, message):
    from fastopt.playground import cli

    assert cli.main(cli_args(*argv)) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_port_must_be_a_port(port):
    with pytest.raises(SystemExit):
        cli_args("--serve", "--port", port)


def test_the_readme_states_the_servers_limits():
    import pathlib

    from fastopt.playground.server import DEFAULT_PORT

    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("needs the source tree")
    text = readme.read_text()
    section = text[text.index("### The interactive playground"):text.index("## What fastopt checks")]
    lr, beta = knobs.KNOBS["lr"], knobs.KNOBS["beta"]
    for claim in (f"127.0.0.1:{DEFAULT_PORT}", f"{GRID_POINTS} x {GRID_POINTS}", f"more than {MAX_STEPS}",
                  f"over {MAX_BODY // 1024} KiB", f"outside {lr.range_text()}", f"outside {beta.range_text()}"):
        assert claim in section.replace("\n", " ").replace("  ", " "), claim
    assert (readme.parent / "docs" / "playground.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_refused_request_does_not_poison_the_next_on_the_same_connection(playground_server):
    """An unread body (here, of a request refused for its Host) is not taken for the next request."""
    connection = http.client.HTTPConnection("127.0.0.1", playground_server.port, timeout=60)
    try:
        connection.request("POST", "/api/run", body=json.dumps(GOOD),
                           headers={"Content-Type": "application/json", "Host": "evil.test"})
        response = connection.getresponse()
        assert response.status == 403 and response.getheader("Connection") == "close"
        response.read()
        connection.request("GET", "/api/config")  # http.client reconnects after the server closed
        response = connection.getresponse()
        assert response.status == 200 and "surfaces" in json.loads(response.read())
    finally:
        connection.close()
