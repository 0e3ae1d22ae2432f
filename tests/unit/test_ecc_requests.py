"""ECC requests rendered from templates (requests.FlatRequest) are the bytes zeep builds.

Every operation of both WSDLs goes through both builders: where the template renders a
request, it must be zeep's, byte for byte; where it declines (None), zeep builds it.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from pipelines.daq.ecc import client as ecc_client
from pipelines.daq.ecc.payloads import ConfigId, DataLink, config_id_xml, data_link_set_xml
from pipelines.daq.ecc.states import Operation
from tests.support.wsdl import WSDLS, soap_of


def zeeps(soap, operation: str, **fields) -> bytes:
    return etree.tostring(soap.zeep.create_message(soap.service, operation, **fields))


def with_fields(soap) -> list[str]:
    return [name for name, writer in soap.writers.items() if writer.fields]


def test_every_transition_and_getstate_has_a_template(soap):
    transitions = [op for op in Operation if op in soap.writers]
    assert "Describe" in transitions
    for operation in transitions:
        assert soap.writers[operation].fields == ["configID", "table"], operation
    assert soap.writers["GetState"].fields == []
    assert soap.writers["GetState"].render({}) == zeeps(soap, "GetState")


def test_a_servers_start_is_zeeps_request():
    soap = ecc_client._soap()
    fields = dict(configID=config_id_xml(ConfigId("d & <1>", "p-2", "c \"3\"")),
                  table=data_link_set_xml([DataLink("CoBo[3]", "router-3", "10.0.0.3", 46005)]))
    assert soap.writers["Start"].render(fields) == zeeps(soap, "Start", **fields)


_built: dict = {}
PLAIN_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)
                     | st.sampled_from("\t\n&<>\"'"), max_size=60)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(PLAIN_TEXT, min_size=4, max_size=4), which=st.integers(0, 100),
       wsdl=st.sampled_from(WSDLS))
def test_plain_fields_render_as_zeep_builds_them(texts, which, wsdl, tmp_path_factory):
    if wsdl not in _built:
        _built[wsdl] = soap_of(wsdl, tmp_path_factory)
    soap = _built[wsdl]
    operations = with_fields(soap)
    operation = operations[which % len(operations)]
    fields = dict(zip(soap.writers[operation].fields, texts))
    assert soap.writers[operation].render(fields) == zeeps(soap, operation, **fields)


@pytest.mark.parametrize("value", ["é", "run\r12", "\x01", "\u2603", "a\x7fb"])
def test_a_field_that_is_not_plain_ascii_is_left_to_zeep(soap, value):
    fields = dict(configID=value, table="<DataLinkSet/>")
    assert soap.writers["Describe"].render(fields) is None


@pytest.mark.parametrize("fields", [{}, {"configID": "<ConfigId/>"},
                                    {"configID": "<ConfigId/>", "table": None},
                                    {"configID": "<ConfigId/>", "tabel": "<DataLinkSet/>"},
                                    {"configID": "<ConfigId/>", "table": "", "extra": ""}])
def test_fields_missing_added_or_not_text_are_left_to_zeep(soap, fields):
    assert soap.writers["Describe"].render(fields) is None


def test_a_client_posts_the_rendered_request_and_zeeps_where_it_declines(monkeypatch):
    sent = []

    def post(url, body, headers):  # what the client would send, kept instead of sent
        sent.append(body)
        raise ecc_client.WireError("not sent")

    client = ecc_client.EccClient("ecc-cobo0", "http://127.0.0.1:1/")
    monkeypatch.setattr(client._transport, "post", post)
    for config in (ConfigId("d", "p", "c"), ConfigId("dé", "p", "c")):
        with pytest.raises(ecc_client.EccError, match="not sent"):
            client.transition("Describe", config, [])
    soap = ecc_client._soap()
    assert sent == [zeeps(soap, "Describe", configID=config_id_xml(config),
                          table=data_link_set_xml([]))
                    for config in (ConfigId("d", "p", "c"), ConfigId("dé", "p", "c"))]
