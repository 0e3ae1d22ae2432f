"""The OpenAPI description names exactly the JSON API's routes and methods."""
import re

from tests.support.web import web_app
from webui.openapi import description


def registered_operations() -> set[tuple[str, str]]:
    app = web_app()
    operations = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        operations |= {(method.lower(), path) for method in rule.methods
                       if method not in ("HEAD", "OPTIONS")}
    return operations


def test_the_description_agrees_with_the_registered_routes():
    spec = description()
    described = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert described == registered_operations()
    assert spec["openapi"].startswith("3.")


def test_every_operation_says_what_it_answers_and_every_reference_resolves():
    spec = description()
    text = repr(spec)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in spec["components"]["schemas"], name
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert operation["summary"] and "400" in operation["responses"], (method, path)
            params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"{(\w+)}", path)), (method, path)
