"""The OpenAPI 3 description of daqflow's JSON API, served at ``/api/openapi.json``.

Written by hand beside the routes it describes: ``tests/integration/test_openapi.py``
checks that it names exactly the registered routes, and the fuzz test sends what
it allows (and what it does not) to the app.
"""
from __future__ import annotations

from models.vocabulary import SERVER_OPERATIONS, TRANSITION_KINDS, RunClass, RunOutcome
from pipelines.runcontrol.launching import (
    COMMENT_MAX,
    MAX_BYTES,
    MAX_SECONDS,
    NOTE_MAX,
    TITLE_MAX,
)
from pipelines.runcontrol.runlog import PER_PAGE_MAX, SEARCH_MAX

ID_MAX = 2147483647


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


# Every JSON answer may be one of these: daqflow says why in {"error": ...}.
ERRORS = {
    "400": _error("bad input: the message names the field; nothing was changed"),
    "401": _error("not logged in: send 'Authorization: Bearer <token>'"),
    "403": _error("a viewer's token: only operators change the DAQ"),
    "404": _error("no such run, workflow or transition"),
    "405": _error("that method is not allowed here"),
    "413": _error("a body over 64 KiB"),
}
REFUSED = {"409": _error("run control's rules forbid it now (the message says which)"),
           "503": _error("Redis or the database is unreachable; nothing was started")}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict) -> dict:
    return {"required": False, "content": {"application/json": {"schema": schema}}}


def _int_path(name: str) -> dict:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": ID_MAX}}


RUN_FILTERS = [
    {"name": "run_class", "in": "query", "schema": {"type": "string", "enum": list(RunClass)}},
    {"name": "since", "in": "query", "description": "first start date (UTC), inclusive",
     "schema": {"type": "string", "format": "date"}},
    {"name": "until", "in": "query", "description": "last start date (UTC), inclusive",
     "schema": {"type": "string", "format": "date"}},
    {"name": "q", "in": "query", "description": "text in the title, comment or note",
     "schema": {"type": "string", "maxLength": SEARCH_MAX}},
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                               "maximum": 10**6}},
    {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                   "maximum": PER_PAGE_MAX}},
]
FIELD_VALUES = {"type": "object", "description": "custom run fields by name (see the run "
                "fields of the experiment); null or empty text removes a value",
                "additionalProperties": {"type": ["number", "string", "null"]}}
TEXT = {"type": "string"}
NO_FIELDS = {"type": "object", "additionalProperties": False, "maxProperties": 0}
NULLABLE_TEXT = {"type": ["string", "null"]}

# A start's planned length: daqflow stops the run at it, and may start the next.
LIMITS = {"duration_seconds": {"type": "number", "minimum": 1, "maximum": MAX_SECONDS},
          "max_bytes": {"type": "integer", "minimum": 1, "maximum": MAX_BYTES},
          "auto_restart": {"type": "boolean",
                           "description": "needs duration_seconds or max_bytes"}}

# One run of a plan: a duration_seconds or max_bytes (or both) ends it.
PLAN_ENTRY = {"type": "object", "additionalProperties": False, "properties": {
    "title": {"type": "string", "maxLength": TITLE_MAX},
    "run_class": {"type": "string", "enum": list(RunClass)},
    "config": {"type": ["string", "null"], "maxLength": 700},
    "duration_seconds": LIMITS["duration_seconds"], "max_bytes": LIMITS["max_bytes"],
    "duration": {"type": "string", "description": "30m, 1h30m, 90s"},
    "max_size": {"type": "string", "description": "20GB, 500MB"},
    "comment": {"type": "string", "maxLength": COMMENT_MAX}, "fields": FIELD_VALUES}}

SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": TEXT}},
    "Accepted": {"type": "object", "required": ["workflow_id"],
                 "properties": {"workflow_id": {"type": "integer"}}},
    "StartRun": {"type": "object", "additionalProperties": False, "properties": {
        "title": {"type": "string", "maxLength": TITLE_MAX},
        "run_class": {"type": "string", "enum": list(RunClass)},
        "comment": {"type": "string", "maxLength": COMMENT_MAX},
        "fields": FIELD_VALUES, **LIMITS}},
    "RunLimits": {"type": "object", "additionalProperties": False, "minProperties": 1,
                  "properties": {
                      "duration_seconds": {"type": ["number", "null"], "minimum": 1,
                                           "maximum": MAX_SECONDS},
                      "max_bytes": {"type": ["integer", "null"], "minimum": 1,
                                    "maximum": MAX_BYTES},
                      "auto_restart": {"type": "boolean"}}},
    "RunPlan": {"type": "object", "required": ["planned_seconds", "auto_restart"],
                "properties": {"planned_seconds": {"type": ["number", "null"]},
                               "planned_bytes": {"type": ["integer", "null"]},
                               "ends_at": {"type": ["string", "null"]},
                               "stops_in_seconds": {"type": ["number", "null"]},
                               "auto_restart": {"type": "boolean"}}},
    "PlanRequest": {"type": "object", "additionalProperties": False, "required": ["entries"],
                    "properties": {"name": {"type": "string", "maxLength": 200},
                                   "entries": {"type": "array", "minItems": 1,
                                               "maxItems": 200, "items": PLAN_ENTRY}}},
    "Plan": {"type": "object", "required": ["id", "name", "state", "entries"], "properties": {
        "id": {"type": "integer"}, "name": TEXT, "state": {
            "type": "string", "enum": ["running", "paused", "done", "aborted"]},
        "error": {"type": ["string", "null"]}, "entries": {"type": "array"}}},
    "StopRun": {"type": "object", "additionalProperties": False, "properties": {
        "note": {"type": "string", "maxLength": NOTE_MAX}, "fields": FIELD_VALUES}},
    "RunEdit": {"type": "object", "additionalProperties": False, "properties": {
        "note": {"type": "string", "maxLength": NOTE_MAX}, "fields": FIELD_VALUES}},
    "RunField": {"type": "object", "properties": {
        "name": TEXT, "type": {"type": "string", "enum": ["number", "text", "choice"]},
        "unit": TEXT, "choices": {"type": "array", "items": TEXT},
        "asked_at": {"type": "string", "enum": ["start", "stop"]},
        "required": {"type": "boolean"}}},
    "Run": {"type": "object", "required": ["number", "title", "run_class", "outcome", "fields"],
            "properties": {
                "number": {"type": "integer"}, "title": TEXT, "run_class": TEXT,
                "config": TEXT, "started_at": NULLABLE_TEXT, "stopped_at": NULLABLE_TEXT,
                "duration_seconds": {"type": ["number", "null"]}, "started_by": TEXT,
                "stopped_by": TEXT, "comment": TEXT, "note": TEXT,
                "files": {"type": "integer"}, "bytes": {"type": "integer"},
                "outcome": {"type": "string", "enum": list(RunOutcome)},
                "fields": {"type": "object"}}},
    "RunList": {"type": "object", "required": ["runs", "total", "page", "per_page", "fields"],
                "properties": {"runs": {"type": "array", "items": _ref("Run")},
                               "total": {"type": "integer"}, "page": {"type": "integer"},
                               "per_page": {"type": "integer"},
                               "fields": {"type": "array", "items": _ref("RunField")}}},
    "RunDetail": {"allOf": [_ref("Run"), {"type": "object", "required": [
        "notes", "workflows", "data", "config_backups", "audit"], "properties": {
        "notes": {"type": "array", "items": {"type": "object"}},
        "workflows": {"type": "array", "items": {"type": "object"}},
        "data": {"type": "array", "items": {"type": "object"}},
        "config_backups": {"type": "array", "items": {"type": "object"}},
        "audit": {"type": "array", "items": {"type": "object"}}}}]},
    "Replay": {"type": "object", "required": ["workflow_id", "replayed_steps", "steps",
                                              "stages", "then", "left_alone"],
               "properties": {"workflow_id": {"type": "integer"},
                              "replayed_steps": {"type": "array", "items": TEXT},
                              "steps": {"type": "array", "items": {"type": "object"}},
                              "stages": {"type": "array", "items": TEXT},
                              "then": {"type": "array", "items": TEXT},
                              "left_alone": {"type": "integer"}}},
    "Configs": {"type": "object", "required": ["active", "common", "servers"],
                "properties": {"active": TEXT, "common": {"type": "array", "items": TEXT},
                               "servers": {"type": "array", "items": {"type": "object"}}}},
    "Alarms": {"type": "object", "required": ["active", "history"],
               "properties": {"active": {"type": "array", "items": {"type": "object"}},
                              "history": {"type": "array", "items": {"type": "object"}}}},
    "Workflow": {"type": "object", "required": ["id", "kind", "state", "stages", "actions"],
                 "properties": {"id": {"type": "integer"}, "kind": TEXT, "state": TEXT,
                                "stages": {"type": "array"}, "actions": {"type": "array"}}},
    "Status": {"type": "object", "required": ["state", "sources", "servers", "legal"],
               "properties": {"state": TEXT, "experiment": NULLABLE_TEXT,
                              "sources": {"type": "array"}, "servers": {"type": "array"},
                              "legal": {"type": "array", "items": TEXT}}},
}


def _operation(summary: str, responses: dict, **extra) -> dict:
    return {"summary": summary, "responses": {**responses, **ERRORS}, **extra}


def _accepted(summary: str, body: dict | None = None, **extra) -> dict:
    responses = {"202": _json(_ref("Accepted"), "sent to the workers"), **REFUSED}
    if body is not None:
        extra["requestBody"] = _body(body)
    return _operation(summary, responses, **extra)


# ?since= of the health series.
SINCE = {"name": "since", "in": "query", "description": "an ISO time (default: an hour ago)",
         "schema": {"type": "string", "format": "date-time"}}

PATHS = {
    "/api/runs/start": {"post": _accepted(
        "Start a run: every source must be READY", _ref("StartRun"))},
    "/api/runs/stop": {"post": _accepted("Stop the run that is going", _ref("StopRun"))},
    "/api/runs": {"get": _operation("The run log, newest first", {"200": _json(
        _ref("RunList"))}, parameters=RUN_FILTERS)},
    "/api/runs.csv": {"get": _operation("The run log as CSV (every matching run)", {
        "200": {"description": "CSV", "content": {"text/csv": {"schema": TEXT}}}},
        parameters=RUN_FILTERS)},
    "/api/runs/{number}": {
        "get": _operation("One run, with its note history, files and audit",
                          {"200": _json(_ref("RunDetail"))}, parameters=[_int_path("number")]),
        "patch": _operation("Change a run's note and fields (audited, every note kept)",
                            {"200": _json(_ref("RunDetail"))}, parameters=[_int_path("number")],
                            requestBody=_body(_ref("RunEdit")))},
    "/api/runs/{number}/limits": {"patch": _operation(
        "Change the run going's planned length or automatic restart (null cancels; audited)",
        {"200": _json(_ref("RunPlan")), **REFUSED}, parameters=[_int_path("number")],
        requestBody=_body(_ref("RunLimits")))},
    "/api/plans": {"post": _operation(
        "Run a plan: its entries, each an ordinary start and stop, one after the other",
        {"201": _json(_ref("Plan")), **REFUSED}, requestBody=_body(_ref("PlanRequest")))},
    "/api/plans/current": {"get": _operation(
        "The current (or last) run plan", {"200": _json({"anyOf": [
            _ref("Plan"), {"type": "null"}]})})},
    "/api/plans/{plan_id}/{action}": {"post": _operation(
        "Resume a paused plan (its failed workflow replayed), skip its entry, or abort it",
        {"200": _json(_ref("Plan")), **REFUSED},
        parameters=[_int_path("plan_id"), {"name": "action", "in": "path", "required": True,
                                           "schema": {"type": "string",
                                                      "enum": ["resume", "skip", "abort"]}}],
        requestBody=_body(NO_FIELDS))},
    "/api/transitions/{name}": {"post": _accepted(
        "Take every source through a collective transition", NO_FIELDS,
        parameters=[{"name": "name", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": list(TRANSITION_KINDS)}}])},
    "/api/ecc-servers/{name}/transitions/{operation}": {"post": _accepted(
        "Move one ECC server one step (reset: one step back from its state)", {
            "type": "object", "additionalProperties": False, "properties": {
                "force": {"type": "boolean", "description": "needed while a run is going"}}},
        parameters=[{"name": "name", "in": "path", "required": True,
                     "schema": {"type": "string", "maxLength": 200}},
                    {"name": "operation", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": list(SERVER_OPERATIONS)}}])},
    "/api/workflows/{workflow_id}/replay": {"post": _operation(
        "Replay a failed or aborted workflow's unsuccessful steps (dry_run=1: only say what)",
        {"202": _json(_ref("Replay"), "sent to the workers"),
         "200": _json(_ref("Replay"), "dry run: what a replay would do; nothing done"),
         **REFUSED}, parameters=[_int_path("workflow_id"), {
             "name": "dry_run", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]}}],
        requestBody=_body(NO_FIELDS))},
    "/api/workflows/{workflow_id}/abort": {"post": _operation(
        "Abort an active workflow: running steps stop at their next poll, nothing more runs",
        {"200": _json({"type": "object", "required": ["workflow_id", "running", "not_started"]}),
         **REFUSED}, parameters=[_int_path("workflow_id")], requestBody=_body(NO_FIELDS))},
    "/api/workflows/{workflow_id}": {"get": _operation(
        "A workflow's stages, steps and who did what", {"200": _json(_ref("Workflow"))},
        parameters=[_int_path("workflow_id")])},
    "/api/configs": {"get": _operation(
        "Configs: every server's chosen one and what it offers; those all offer",
        {"200": _json(_ref("Configs"))})},
    "/api/configs/read": {"post": _operation(
        "Ask every ECC server GetConfigIDs now", {"200": _json(_ref("Configs"))},
        requestBody=_body(NO_FIELDS))},
    "/api/configs/choose": {"post": _operation(
        "Choose the config for the next Describe: of every server, or of one (audited)",
        {"200": _json(_ref("Configs")), **REFUSED},
        requestBody=_body({"type": "object", "additionalProperties": False,
                           "required": ["config"], "properties": {
                               "config": {"type": "string", "maxLength": 700},
                               "server": {"type": "string", "maxLength": 200}}}))},
    "/api/alarms": {"get": _operation(
        "Active alarms and the history", {"200": _json(_ref("Alarms"))})},
    "/api/alarms/{alarm_id}/ack": {"post": _operation(
        "Acknowledge an alarm (operators; audited)", {"200": _json({"type": "object"}),
                                                      **REFUSED},
        parameters=[_int_path("alarm_id")], requestBody=_body(NO_FIELDS))},
    "/api/health/routers": {"get": _operation(
        "Each data router's health samples: write rate, files, bytes, free disk",
        {"200": _json({"type": "object", "additionalProperties": {"type": "array"}})},
        parameters=[SINCE])},
    "/api/health/ecc": {"get": _operation(
        "Each ECC server's reachability and state changes, from the state that held at since",
        {"200": _json({"type": "object", "additionalProperties": {"type": "array"}})},
        parameters=[SINCE])},
    "/api/status": {"get": _operation("The DAQ's state, run, sources, servers, routers",
                                      {"200": _json(_ref("Status"))})},
    "/api/openapi.json": {"get": _operation("This description", {"200": _json(
        {"type": "object"})})},
}


def description() -> dict:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "daqflow", "version": "1",
                 "description": "Run control of a GET-electronics DAQ. Operators' tokens "
                                "change the DAQ; viewers' tokens read it."},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "token": {"type": "http", "scheme": "bearer"}}},
        "security": [{"token": []}],
    }
