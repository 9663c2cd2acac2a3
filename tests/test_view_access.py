"""`rapport view --host` beyond loopback, over real HTTP: every request (GET too, static files
too) needs the token printed once at start, which the first request moves into a cookie; a Host
that is not one of this machine's names is refused; errors before serving print only the error
line; an unknown option suggests a real close one or none."""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.request

import pytest

from tests.conftest import error_lines, rapport_in_process
from tests.viewer_helpers import judged_corpus, serving


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return judged_corpus(tmp_path_factory.mktemp("access"), 3)[0]


@pytest.fixture(scope="module")
def exposed(corpus):
    with serving(corpus, "--host", "0.0.0.0") as viewer:
        line = viewer.process.stdout.readline()
        found = re.search(r"\?token=([A-Za-z0-9_-]+)", line)
        assert found, line
        viewer.access_token = found.group(1)
        yield viewer


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(
    viewer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(viewer.base + path, headers=headers or {})
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=30) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


@pytest.mark.parametrize("path", ["/", "/conversations", "/queue", "/static/viewer.js"])
def test_a_get_without_the_token_is_refused(exposed, path):
    status, page, _ = fetch(exposed, path)
    assert status == 403
    assert "needs its access token" in page
    assert "csrf-token' content=''" in page  # a refusal carries no form token either


def test_the_token_in_the_address_becomes_a_cookie_that_opens_every_page(exposed):
    status, _, headers = fetch(exposed, f"/conversations?token={exposed.access_token}&page=1")
    assert status == 303 and headers["Location"] == "/conversations?page=1"
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    assert cookie == f"rapport_token={exposed.access_token}"
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    for path in ("/", "/conversations", "/queue", "/static/viewer.js"):
        assert fetch(exposed, path, {"Cookie": cookie})[0] == 200, path
    assert fetch(exposed, "/", {"Cookie": "rapport_token=guess"})[0] == 403
    assert fetch(exposed, "/?token=guess")[0] == 403


def test_a_host_that_is_not_this_machine_is_refused_even_with_the_token(exposed):
    cookie = {"Cookie": f"rapport_token={exposed.access_token}"}
    status, page, _ = fetch(exposed, "/", {**cookie, "Host": "evil.example:8765"})
    assert status == 421 and "not evil.example:8765" in page
    port = exposed.base.rsplit(":", 1)[1]
    assert fetch(exposed, "/", {**cookie, "Host": f"{socket.gethostname()}:{port}"})[0] == 200


def test_a_port_in_use_prints_only_the_error_line(corpus):
    with serving(corpus) as running:
        port = running.base.rsplit(":", 1)[1]
        outcome = rapport_in_process("view", "--db", str(corpus), "--port", port)
    assert outcome.returncode == 2, outcome
    assert outcome.stdout == ""  # no "serving at" line before the error
    assert len(error_lines(outcome)) == 1 and f"cannot listen on 127.0.0.1:{port}" in outcome.stderr


def test_an_unknown_host_prints_only_the_error_line(corpus):
    outcome = rapport_in_process("view", "--db", str(corpus), "--host", "no-such-host.invalid")
    assert outcome.returncode == 2, outcome
    assert outcome.stdout == ""
    assert len(error_lines(outcome)) == 1 and "unknown host" in outcome.stderr


@pytest.mark.parametrize(
    ("option", "suggested"),
    [("--hosts", "--host"), ("--prot", "--port"), ("--token", None), ("--allow-origin", None)],
)
def test_an_unknown_option_suggests_one_close_real_option_or_none(corpus, option, suggested):
    outcome = rapport_in_process("view", "--db", str(corpus), option)
    assert outcome.returncode == 2
    (line,) = error_lines(outcome)
    assert "Possible options" not in line
    if suggested:
        assert f"(did you mean {suggested}?)" in line
    else:
        assert "did you mean" not in line
