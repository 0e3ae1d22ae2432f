"""What an operator types is checked where it enters: valid Unicode, printable, bounded."""
import pytest

from pipelines.runcontrol.errors import Invalid
from pipelines.runcontrol.texts import operator_text


def test_good_text_is_taken_stripped_whatever_its_script():
    assert operator_text("title", "  run 7 ✓ Ω β-decay ", 200) == "run 7 ✓ Ω β-decay"


@pytest.mark.parametrize("value, message", [
    ("beam \ud800 test", "title is not valid Unicode text"),  # a lone surrogate from JSON
    ("Run \udce0", "title is not valid Unicode text"),  # a Latin-1 byte from a terminal
    ("a\x00b", "title holds control characters"),
    ("line\nbreak", "title holds control characters"),
    ("next\x85line", "title holds control characters"),  # C1: NEL
    ("x" * 201, "title is longer than 200 characters"),
    (7, "title must be text"),
])
def test_text_a_run_record_could_not_hold_is_refused_naming_the_field(value, message):
    with pytest.raises(Invalid, match=message):
        operator_text("title", value, 200)


def test_a_password_typed_on_a_non_utf8_terminal_is_refused_not_a_traceback():
    from pipelines.runcontrol.accounts import AccountError, check_password

    with pytest.raises(AccountError, match="not valid UTF-8"):
        check_password("caf\udce9-secret")
    assert check_password("café-secret") == "café-secret"
