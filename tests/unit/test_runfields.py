"""Custom run fields: what a start, a stop or an edit may give them, and the CSV export."""
import csv
import io

import pytest

from models.runlog import RunField
from pipelines.runcontrol.errors import Invalid
from pipelines.runcontrol.runfields import check_values, merged
from pipelines.runcontrol.runlog import COLUMNS, csv_text
from pipelines.simulator.topology import simulated_topology
from pipelines.topology.schema import TopologyError, parse

FIELDS = [
    RunField(experiment_id=1, name="beam intensity", type="number", unit="pps"),
    RunField(experiment_id=1, name="gas pressure", type="number", unit="Torr", required=True),
    RunField(experiment_id=1, name="target", type="choice", choices=["none", "CD2"]),
    RunField(experiment_id=1, name="shift crew", type="text"),
    RunField(experiment_id=1, name="beam on target", type="choice", choices=["yes", "no"],
             asked_at="stop", required=True),
]


def test_a_start_takes_its_fields_typed_and_requires_the_required_ones():
    assert check_values(FIELDS, {"gas pressure": "150.5", "beam intensity": 1e5,
                                 "target": "CD2", "shift crew": " ana, bo "}, "start") == {
        "gas pressure": 150.5, "beam intensity": 1e5, "target": "CD2",
        "shift crew": "ana, bo"}
    with pytest.raises(Invalid, match="the run's start needs field\\(s\\): gas pressure"):
        check_values(FIELDS, {"target": "CD2"}, "start")
    with pytest.raises(Invalid, match="the run's stop needs field\\(s\\): beam on target"):
        check_values(FIELDS, {}, "stop")


@pytest.mark.parametrize("values, message", [
    ({"gas pressure": 1, "colour": "red"}, "no run field named 'colour'"),
    ({"gas pressure": "high"}, "field 'gas pressure' must be a number, not 'high'"),
    ({"gas pressure": True}, "field 'gas pressure' must be a number"),
    ({"gas pressure": [1]}, "field 'gas pressure' must be a number"),
    ({"gas pressure": "nan"}, "must be a finite number"),
    ({"gas pressure": 1, "target": "gold"}, "field 'target' must be one of: none, CD2"),
    ({"gas pressure": 1, "shift crew": 7}, "field 'shift crew' must be text"),
    ({"gas pressure": 1, "shift crew": "x" * 201}, "longer than 200"),
    ({"gas pressure": 1, "beam on target": "yes"}, "asked at the run's stop, not its start"),
    ("gas pressure=1", "fields must be an object"),
])
def test_bad_values_are_refused_naming_the_field(values, message):
    with pytest.raises(Invalid, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_values(FIELDS, values, "start")


def test_an_edit_takes_any_field_requires_none_and_an_empty_value_removes_one():
    changes = check_values(FIELDS, {"beam on target": "no", "target": ""})
    assert changes == {"beam on target": "no", "target": None}
    assert merged({"target": "CD2", "gas pressure": 150.0}, changes) == {
        "gas pressure": 150.0, "beam on target": "no"}


def test_the_csv_has_the_sheet_then_one_column_per_field_and_no_formulas():
    listing = {"fields": [{"name": "gas pressure"}, {"name": "target"}], "runs": [
        {**{column: None for column in COLUMNS}, "number": 7, "title": "=HYPERLINK(\"x\")",
         "comment": "cosmics, calibration", "fields": {"gas pressure": 150.0}}]}
    header, row = csv.reader(io.StringIO(csv_text(listing)))
    assert header == list(COLUMNS) + ["gas pressure", "target"]
    record = dict(zip(header, row))
    assert record["number"] == "7" and record["title"] == "'=HYPERLINK(\"x\")"
    assert record["comment"] == "cosmics, calibration"
    assert record["gas pressure"] == "150.0" and record["target"] == ""


def test_the_topology_defines_run_fields_and_refuses_inconsistent_ones():
    base = simulated_topology([18001, 18002])
    topo = parse(base + '\n[[run_fields]]\nname = "gas pressure"\ntype = "number"\n'
                 'unit = "Torr"\nrequired = true\n')
    assert [(f.name, f.type, f.unit, f.required) for f in topo.run_fields] == [
        ("gas pressure", "number", "Torr", True)]
    for bad, message in [
        ('name = "target"\ntype = "choice"\n', "needs its choices"),
        ('name = "crew"\ntype = "text"\nunit = "m"\n', "only a number field has a unit"),
        ('name = "x"\ntype = "colour"\n', "run_fields[0].type"),
        ('name = "x"\nasked_at = "lunch"\n', "run_fields[0].asked_at"),
    ]:
        with pytest.raises(TopologyError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse(base + "\n[[run_fields]]\n" + bad)
