"""WSDL loading on a closed network, and requests valid against a gSOAP-style WSDL."""
import socket
from pathlib import Path

import pytest
from lxml import etree

from pipelines import ecc

# A WSDL shaped like the ones gSOAP 2.7 ECC servers ship: its schema imports the
# SOAP-encoding namespace by URL. (Written for these tests, not copied.)
GSOAP_STYLE = """<?xml version="1.0" encoding="UTF-8"?>
<definitions name="ecc" targetNamespace="urn:ecc" xmlns:tns="urn:ecc" xmlns:ecc="urn:ecc"
 xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:SOAP="http://schemas.xmlsoap.org/wsdl/soap/"
 xmlns="http://schemas.xmlsoap.org/wsdl/">
<types>
 <schema targetNamespace="urn:ecc" xmlns="http://www.w3.org/2001/XMLSchema" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
  elementFormDefault="qualified" attributeFormDefault="unqualified">
  <import namespace="http://schemas.xmlsoap.org/soap/encoding/" schemaLocation="%(encoding)s"/>
  <element name="Describe"><complexType><sequence>
   <element name="configID" type="xsd:string" minOccurs="1" maxOccurs="1"/>
   <element name="table" type="xsd:string" minOccurs="1" maxOccurs="1"/>
  </sequence></complexType></element>
  <element name="GetState"><complexType><sequence></sequence></complexType></element>
  <element name="ResponseText"><complexType><sequence>
   <element name="ErrorCode" type="xsd:int" minOccurs="1" maxOccurs="1"/>
   <element name="ErrorMessage" type="xsd:string" minOccurs="1" maxOccurs="1"/>
   <element name="Text" type="xsd:string" minOccurs="1" maxOccurs="1"/>
  </sequence></complexType></element>
  <element name="ResponseState"><complexType><sequence>
   <element name="ErrorCode" type="xsd:int" minOccurs="1" maxOccurs="1"/>
   <element name="ErrorMessage" type="xsd:string" minOccurs="1" maxOccurs="1"/>
   <element name="State" type="xsd:int" minOccurs="1" maxOccurs="1"/>
   <element name="Transition" type="xsd:int" minOccurs="1" maxOccurs="1"/>
  </sequence></complexType></element>
 </schema>
</types>
<message name="Describe"><part name="parameters" element="ecc:Describe"/></message>
<message name="GetState"><part name="parameters" element="ecc:GetState"/></message>
<message name="ResponseText"><part name="parameters" element="ecc:ResponseText"/></message>
<message name="ResponseState"><part name="parameters" element="ecc:ResponseState"/></message>
<portType name="eccPortType">
 <operation name="Describe"><input message="tns:Describe"/><output message="tns:ResponseText"/></operation>
 <operation name="GetState"><input message="tns:GetState"/><output message="tns:ResponseState"/></operation>
</portType>
<binding name="ecc" type="tns:eccPortType">
 <SOAP:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
 <operation name="Describe"><SOAP:operation soapAction=""/>
  <input><SOAP:body parts="parameters" use="literal"/></input>
  <output><SOAP:body parts="parameters" use="literal"/></output></operation>
 <operation name="GetState"><SOAP:operation soapAction=""/>
  <input><SOAP:body parts="parameters" use="literal"/></input>
  <output><SOAP:body parts="parameters" use="literal"/></output></operation>
</binding>
<service name="ecc"><port name="ecc" binding="tns:ecc"><SOAP:address location="http://localhost:8083"/></port></service>
</definitions>
"""


@pytest.fixture
def no_network(monkeypatch):
    """Any connection to a non-loopback address fails, and is recorded."""
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("::1", "localhost")):
            attempts.append(address)
            raise OSError(101, "Network is unreachable")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            attempts.append(host)
            raise socket.gaierror(-3, "Temporary failure in name resolution")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


def _write(tmp_path: Path, encoding_url: str) -> str:
    path = tmp_path / "ecc-gsoap.wsdl"
    path.write_text(GSOAP_STYLE % {"encoding": encoding_url})
    return str(path)


def _request_body(wsdl: str) -> etree._Element:
    from zeep import Client

    client = Client(ecc.load_wsdl(wsdl))
    service = client.create_service(ecc.BINDING, "http://127.0.0.1:1/")
    envelope = client.create_message(service, "Describe", configID="<ConfigId/>",
                                     table="<DataLinkSet/>")
    return envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]


def test_wsdl_importing_soap_encoding_by_url_loads_offline(tmp_path, no_network):
    wsdl = _write(tmp_path, "http://schemas.xmlsoap.org/soap/encoding/")
    body = _request_body(wsdl)
    assert body.tag == "{urn:ecc}Describe"
    assert no_network == []  # nothing even tried to go online


def test_requests_are_the_same_and_valid_against_the_gsoap_schema(tmp_path, no_network):
    wsdl = _write(tmp_path, "http://schemas.xmlsoap.org/soap/encoding/")
    ours, theirs = _request_body(str(ecc.DEFAULT_WSDL)), _request_body(wsdl)
    assert etree.tostring(ours) == etree.tostring(theirs)
    schema_node = etree.parse(wsdl).find(".//{http://www.w3.org/2001/XMLSchema}schema")
    for imp in schema_node.findall("{http://www.w3.org/2001/XMLSchema}import"):
        imp.set("schemaLocation", ecc.LOCAL_SCHEMAS[imp.get("namespace")].as_uri())
    schema = etree.XMLSchema(etree.fromstring(etree.tostring(schema_node)))
    schema.assertValid(etree.fromstring(etree.tostring(theirs)))


def test_unknown_remote_import_fails_with_a_clear_message(tmp_path, no_network):
    wsdl = _write(tmp_path, "http://example.invalid/other.xsd")
    with pytest.raises(OSError, match="does not fetch schemas over the network"):
        ecc.load_wsdl(wsdl)
    assert no_network == []


def test_client_talks_to_the_simulator_through_a_deployment_wsdl(tmp_path, simulator,
                                                                 monkeypatch, no_network):
    simulator.reset()
    monkeypatch.setenv("DAQFLOW_ECC_WSDL", _write(tmp_path, "http://schemas.xmlsoap.org/soap/encoding/"))
    client = ecc.EccClient("ecc-cobo0", f"http://127.0.0.1:{simulator.ports[0]}/")
    assert client.get_state().state == ecc.EccState.IDLE
    client.transition("Describe", ecc.ConfigId("cfg", "cfg", "cfg"),
                      [ecc.DataLink("CoBo[0]", "router-0", "127.0.0.1", 46005)])
    assert [e["operation"] for e in simulator.log()] == ["Describe"]
