"""WSDL loading on a closed network, and requests valid against a gSOAP-style WSDL."""
import pytest
from lxml import etree

from pipelines.daq.ecc import client as ecc_client
from pipelines.daq.ecc.transport import LOCAL_SCHEMAS
from tests.support.wsdl import gsoap_style_wsdl


def _request_body(wsdl: str) -> etree._Element:
    from zeep import Client

    client = Client(ecc_client.load_wsdl(wsdl))
    service = client.create_service(ecc_client.BINDING, "http://127.0.0.1:1/")
    envelope = client.create_message(service, "Describe", configID="<ConfigId/>",
                                     table="<DataLinkSet/>")
    return envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]


def test_wsdl_importing_soap_encoding_by_url_loads_offline(tmp_path, no_network):
    wsdl = gsoap_style_wsdl(tmp_path, "http://schemas.xmlsoap.org/soap/encoding/")
    body = _request_body(wsdl)
    assert body.tag == "{urn:ecc}Describe"
    assert no_network == []  # nothing even tried to go online


def test_requests_are_the_same_and_valid_against_the_gsoap_schema(tmp_path, no_network):
    wsdl = gsoap_style_wsdl(tmp_path, "http://schemas.xmlsoap.org/soap/encoding/")
    ours, theirs = _request_body(str(ecc_client.DEFAULT_WSDL)), _request_body(wsdl)
    assert etree.tostring(ours) == etree.tostring(theirs)
    schema_node = etree.parse(wsdl).find(".//{http://www.w3.org/2001/XMLSchema}schema")
    for imp in schema_node.findall("{http://www.w3.org/2001/XMLSchema}import"):
        imp.set("schemaLocation", LOCAL_SCHEMAS[imp.get("namespace")].as_uri())
    schema = etree.XMLSchema(etree.fromstring(etree.tostring(schema_node)))
    schema.assertValid(etree.fromstring(etree.tostring(theirs)))


def test_unknown_remote_import_fails_with_a_clear_message(tmp_path, no_network):
    wsdl = gsoap_style_wsdl(tmp_path, "http://example.invalid/other.xsd")
    with pytest.raises(OSError, match="does not fetch schemas over the network"):
        ecc_client.load_wsdl(wsdl)
    assert no_network == []
