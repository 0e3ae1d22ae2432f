"""What an operator types is checked where it enters: valid Unicode, printable, bounded."""
import pytest

from pipelines.runcontrol.errors import Invalid
from pipelines.runcontrol.launching import check_limits
from pipelines.runcontrol.texts import duration_seconds, operator_text, size_bytes


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


@pytest.mark.parametrize("typed, seconds", [
    ("30m", 1800), ("1h30m", 5400), ("90s", 90), ("45", 2700), (" 2 h ", 7200),
    ("1h 5m 3s", 3903), ("2.5m", 150), ("", None)])
def test_a_planned_duration_is_read_as_an_operator_types_it(typed, seconds):
    assert duration_seconds("duration", typed) == seconds


@pytest.mark.parametrize("typed", ["soon", "30 x", "h", "-5m", "1e3s"])
def test_a_duration_that_is_not_one_is_refused_naming_the_field(typed):
    with pytest.raises(Invalid, match="duration must be a duration like 30m"):
        duration_seconds("duration", typed)


@pytest.mark.parametrize("typed, size", [
    ("20GB", 20 * 10**9), ("500 MB", 500 * 10**6), ("20", 20 * 10**9), ("1.5tb", 1.5e12),
    ("", None)])
def test_a_size_is_read_in_powers_of_ten(typed, size):
    assert size_bytes("max_gb", typed) == size


def test_a_size_that_is_not_one_is_refused():
    with pytest.raises(Invalid, match="max_gb must be a size like 20GB"):
        size_bytes("max_gb", "lots")


@pytest.mark.parametrize("limits, message", [
    ({"duration_seconds": 0}, "duration_seconds must be a number of seconds from 1"),
    ({"duration_seconds": True}, "duration_seconds must be a number"),
    ({"duration_seconds": 8 * 86400}, "from 1 to 604800"),
    ({"max_bytes": 1.5}, "max_bytes must be a whole number of bytes"),
    ({"auto_restart": "yes"}, "auto_restart must be true or false"),
    ({"auto_restart": True}, "auto_restart needs a planned length"),
])
def test_a_planned_length_that_cannot_work_is_refused(limits, message):
    with pytest.raises(Invalid, match=message):
        check_limits(**limits)


def test_a_planned_length_is_kept_as_given():
    assert check_limits(duration_seconds=30, auto_restart=True) == {
        "duration_seconds": 30.0, "auto_restart": True}
    assert check_limits() == {}
