"""Rendering: field selection, formats json/env/template, base64 decoding."""

import base64
import json
import os
import subprocess

import pytest

from helpers.harness import TIMEOUT

pytestmark = pytest.mark.fuse


def local(path, **kw):
    return {"backend": "local", "path": path, **kw}


def test_field_selects_nested_value_by_dotted_path(sandbox):
    d = sandbox.start({
        "leaf": local("cfg", field="outer.inner.leaf"),
        "dotted-key": local("cfg", field="a.b"),
        "number": local("cfg", field="outer.port"),
    }, data={"cfg": {"outer": {"inner": {"leaf": "deep-value"}, "port": 5432},
                     "a.b": "whole-key-wins"}})
    assert d.read("leaf") == "deep-value"
    assert d.read("dotted-key") == "whole-key-wins"
    assert d.read("number") == "5432"


def test_format_json_is_compact_with_sorted_keys(sandbox):
    value = {"zeta": "last", "alpha": "first", "n": 5, "nested": {"y": None, "x": True},
             "list": ["b", "a"]}
    d = sandbox.start({"conf.json": local("obj", format="json")}, data={"obj": value})
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert d.read("conf.json") == expected
    assert os.stat(d.path("conf.json")).st_size == len(expected.encode())


def test_format_env_writes_sorted_single_quoted_lines(sandbox):
    value = {"DB_USER": "admin", "DB_PASS": "it's $ecret \"q\" `x` \\n", "A_FIRST": "a b"}
    d = sandbox.start({"db.env": local("envsrc", format="env")}, data={"envsrc": value})
    expected = ("A_FIRST='a b'\n"
                "DB_PASS='it'\\''s $ecret \"q\" `x` \\n'\n"
                "DB_USER='admin'\n")
    assert d.read("db.env") == expected
    # And a POSIX shell reads back exactly the original values.
    script = '. "$1"; printf "%s\\0%s\\0%s" "$A_FIRST" "$DB_PASS" "$DB_USER"'
    r = subprocess.run(["/bin/sh", "-c", script, "sh", d.path("db.env")],
                       capture_output=True, timeout=TIMEOUT, check=True)
    assert r.stdout.decode().split("\0") == [value["A_FIRST"], value["DB_PASS"], value["DB_USER"]]


def test_format_template_substitutes_keys_and_dotted_paths(sandbox):
    tmpl = ("url=postgres://{{username}}:{{ password }}@{{db.host}}/app\n"
            "braces={{{{x\n")
    d = sandbox.start({"app.conf": local("tpl", format="template", template=tmpl)},
                      data={"tpl": {"username": "u1", "password": "p@ss",
                                    "db": {"host": "db.internal"}}})
    assert d.read("app.conf") == "url=postgres://u1:p@ss@db.internal/app\nbraces={{x\n"


def test_decode_base64_serves_the_decoded_bytes(sandbox):
    raw = b"\x00\x01binary\xff\xfedata\n" + bytes(range(256))
    d = sandbox.start({"cert.der": local("b64", field="cert", decode="base64")},
                      data={"b64": {"cert": base64.b64encode(raw).decode()}})
    assert d.read_bytes("cert.der") == raw
    assert os.stat(d.path("cert.der")).st_size == len(raw)
