"""The page's durations as a shift reads them."""
from webui.filters import seconds


def test_a_short_duration_keeps_its_tenths_a_longer_one_whole_seconds():
    assert seconds(0.2) == "0.2 s"  # a quick transition is not "0 s"
    assert seconds(3.46) == "3.5 s"
    assert seconds(12.7) == "12 s"
    assert seconds(125.0) == "125 s"
    assert seconds(None) == ""
