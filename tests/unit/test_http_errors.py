"""The one mapping of an HTTP reply to the error tree (`errors.from_reply`), which every client
of a Dockyard API uses (client.ApiClient, httpclient.HttpClient under the server's AgentClient,
the CLI's console).

A reply with the error body gives back the class of its code, with its message and status
(what `api_errors.install` sent); any other body gives the class of its status, with
"HTTP <status>: <body>" as message.
"""

from __future__ import annotations

import json

import pytest

from dockyard import errors
from dockyard.errors import (
    BackendError,
    Conflict,
    DockyardError,
    Forbidden,
    InvalidRequest,
    MalformedRequest,
    NoCapacity,
    NotFound,
    NoValidHost,
    PayloadTooLarge,
    PoolExhausted,
    QuotaExceeded,
    TemporaryError,
    Unauthorized,
    from_reply,
)

TREE = [DockyardError, InvalidRequest, MalformedRequest, PayloadTooLarge, Unauthorized,
        Forbidden, NotFound, Conflict, NoCapacity, NoValidHost, QuotaExceeded, PoolExhausted,
        BackendError, TemporaryError]


def test_the_table_covers_every_class_of_the_tree() -> None:
    """A class added to the tree (a new code) must be added to the code table too, else its
    replies would come back as the base class. (A subclass elsewhere that keeps its parent's
    code, such as compose's ComposeError, comes back as that parent.)"""
    def subclasses(cls: type[DockyardError]) -> set[type[DockyardError]]:
        return {cls}.union(*(subclasses(c) for c in cls.__subclasses__()))
    assert {c for c in subclasses(DockyardError) if "code" in vars(c)} == set(TREE)
    assert set(errors._BY_CODE.values()) == set(TREE)


@pytest.mark.parametrize("cls", TREE, ids=lambda c: c.__name__)
def test_an_error_body_comes_back_as_the_class_the_server_raised(
        cls: type[DockyardError]) -> None:
    sent = cls("the message")
    for body in (json.dumps(sent.to_body()).encode(), json.dumps(sent.to_body()),
                 sent.to_body()):
        got = from_reply(sent.status, body)
        assert type(got) is cls
        assert (got.message, got.status, got.code) == ("the message", cls.status, cls.code)


@pytest.mark.parametrize(("status", "cls"), [
    (400, MalformedRequest), (401, Unauthorized), (403, Forbidden), (404, NotFound),
    (409, Conflict), (422, InvalidRequest), (500, DockyardError), (502, BackendError),
    (503, TemporaryError), (405, DockyardError), (504, DockyardError)])
def test_a_reply_without_the_error_body_maps_by_its_status(
        status: int, cls: type[DockyardError]) -> None:
    """A proxy's page, an empty reply, a refused websocket handshake."""
    got = from_reply(status, b"<html>gateway says no</html>")
    assert type(got) is cls
    assert got.message == f"HTTP {status}: <html>gateway says no</html>"
    assert got.status == status
    assert type(from_reply(status, b"")) is cls
    assert from_reply(status, b"").message == f"HTTP {status}: "


def test_the_status_table_holds_the_most_general_class_of_each_status() -> None:
    for status, cls in errors.BY_STATUS.items():
        assert cls.status == status
        assert cls.__base__ is DockyardError or cls.__base__.status != status


def test_a_code_outside_the_tree_keeps_the_message_and_the_status() -> None:
    """api_errors sends codes of its own for Starlette's refusals (405, 415)."""
    body = b'{"error": {"code": "method_not_allowed", "message": "Method Not Allowed"}}'
    got = from_reply(405, body)
    assert type(got) is DockyardError
    assert (got.message, got.status) == ("Method Not Allowed", 405)


def test_json_that_is_not_the_error_body_is_quoted_as_parsed() -> None:
    got = from_reply(404, b'{"detail": "Not Found"}')
    assert type(got) is NotFound
    assert got.message == "HTTP 404: {'detail': 'Not Found'}"


def test_a_long_body_is_cut_and_bad_bytes_are_replaced() -> None:
    got = from_reply(502, b"\xff" + b"x" * 500)
    assert got.message == "HTTP 502: \ufffd" + "x" * 199
