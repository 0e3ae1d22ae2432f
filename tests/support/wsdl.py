"""A WSDL as real ECC servers ship it, for the closed-network tests."""
from __future__ import annotations

from pathlib import Path

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


def gsoap_style_wsdl(tmp_path: Path, encoding_url: str) -> str:
    """Write a gSOAP-style ECC WSDL importing the SOAP-encoding schema from ``encoding_url``."""
    path = tmp_path / "ecc-gsoap.wsdl"
    path.write_text(GSOAP_STYLE % {"encoding": encoding_url})
    return str(path)


# The two WSDLs the SOAP tests run on: the one daqflow ships, and one as gSOAP ships them.
WSDLS = ("daqflow's WSDL", "a gSOAP-style WSDL")


def soap_of(which: str, tmp_path_factory):
    """zeep's shared side of the ECC calls (``client._soap``) for one of ``WSDLS``."""
    from pipelines.daq.ecc import client as ecc_client

    if which == WSDLS[0]:
        return ecc_client._soap()
    return ecc_client._soap(gsoap_style_wsdl(tmp_path_factory.mktemp("wsdl"),
                                             "http://schemas.xmlsoap.org/soap/encoding/"))
