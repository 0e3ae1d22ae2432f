"""What the start and stop forms and the API accept, before run control checks the sheet."""
import pytest

from models.vocabulary import RunClass
from pipelines.runcontrol.errors import Invalid
from webui.inputs import from_form, parse_start, parse_stop


def test_a_title_and_class_are_taken_trimmed_with_comment_and_fields_passed_on():
    assert parse_start({"title": "  cosmics ", "run_class": "BEAM", "comment": "c",
                        "fields": {"target": "C"}}) == {
        "title": "cosmics", "run_class": "BEAM", "comment": "c", "fields": {"target": "C"}}
    assert parse_start({}) == {"title": "", "run_class": RunClass.TEST, "comment": "",
                               "fields": None}


@pytest.mark.parametrize("fields, message", [
    ({"title": 7}, "title must be text"),
    ({"title": "x" * 201}, "longer than 200"),
    ({"title": "a\x00b"}, "control characters"),
    ({"run_class": "beam"}, "run_class must be one of TEST, PROD, BEAM, JUNK, PULS"),
    ({"note": "x"}, "unknown field(s): note"),
])
def test_bad_start_fields_are_refused_naming_the_field(fields, message):
    with pytest.raises(Invalid, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_start(fields)


def test_a_stop_takes_a_note_and_fields_only():
    assert parse_stop({"note": "beam lost at 3:10"}) == {"note": "beam lost at 3:10",
                                                         "fields": None}
    with pytest.raises(Invalid, match="unknown field"):
        parse_stop({"title": "x"})


def test_a_forms_run_field_inputs_are_gathered_under_fields():
    assert from_form({"title": "t", "field:gas pressure": "150", "field:target": ""}) == {
        "title": "t", "fields": {"gas pressure": "150", "target": ""}}
    assert from_form({"note": "n"}) == {"note": "n"}
