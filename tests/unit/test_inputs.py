"""What the start form and the API accept as a run's title and class."""
import pytest

from models.vocabulary import RunClass
from pipelines.runcontrol.errors import Invalid
from webui.inputs import parse_start


def test_a_title_and_class_are_taken_trimmed():
    assert parse_start({"title": "  cosmics ", "run_class": "BEAM"}) == ("cosmics", "BEAM")
    assert parse_start({}) == ("", RunClass.TEST)


@pytest.mark.parametrize("fields, message", [
    ({"title": 7}, "title must be text"),
    ({"title": "x" * 201}, "longer than 200"),
    ({"title": "a\x00b"}, "control characters"),
    ({"run_class": "beam"}, "run_class must be one of TEST, PROD, BEAM, JUNK, PULS"),
    ({"comment": "x"}, "unknown field(s): comment"),
])
def test_bad_fields_are_refused_naming_the_field(fields, message):
    with pytest.raises(Invalid, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_start(fields)
