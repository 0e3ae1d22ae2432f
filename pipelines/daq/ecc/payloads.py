"""The XML an ECC server takes and returns: a config (``configID``), data links (``table``)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from lxml import etree


@dataclass(frozen=True)
class DataLink:
    """One source's data link: who sends, and which data router receives."""

    source: str
    router_name: str
    ip_address: str
    port: int
    type: str = "TCP"


@dataclass(frozen=True)
class ConfigId:
    """A config: the describe, prepare and configure file names."""

    describe: str
    prepare: str
    configure: str


# A start sends every server the same few configs: built once each, not once a step (a
# sixth of driving a step's CPU at N = 64, py-spy).
@lru_cache(maxsize=256)
def config_id_xml(config: ConfigId) -> str:
    """The ``configID`` argument: the config as ``<ConfigId>`` XML text."""
    root = etree.Element("ConfigId")
    for kind in ("describe", "prepare", "configure"):
        etree.SubElement(root, "SubConfigId", type=kind).text = getattr(config, kind)
    return etree.tostring(root, encoding="unicode")


def parse_config_ids(text: str) -> list[ConfigId]:
    """Parse a ``<ConfigId>`` element, or a list of them as GetConfigIDs returns."""
    root = etree.fromstring(text.encode())
    nodes = [root] if root.tag == "ConfigId" else root.iter("ConfigId")
    configs = []
    for node in nodes:
        parts = {sub.get("type"): (sub.text or "") for sub in node.iter("SubConfigId")}
        configs.append(ConfigId(parts.get("describe", ""), parts.get("prepare", ""),
                                parts.get("configure", "")))
    return configs


def data_link_set_xml(links: Iterable[DataLink]) -> str:
    """The ``table`` argument: one ``<DataLink>`` per source of the server."""
    return _data_link_set_xml(tuple(links))


# Each server is sent the same links at every transition: built once (a tenth of driving
# a step's CPU at N = 64, py-spy). Enough entries for a thousand servers' links, twice over.
@lru_cache(maxsize=2048)
def _data_link_set_xml(links: tuple[DataLink, ...]) -> str:
    root = etree.Element("DataLinkSet")
    for link in links:
        node = etree.SubElement(root, "DataLink")
        etree.SubElement(node, "DataSender", id=link.source)
        etree.SubElement(node, "DataRouter", name=link.router_name, ipAddress=link.ip_address,
                         port=str(link.port), type=link.type)
    return etree.tostring(root, encoding="unicode")


def parse_data_link_set(text: str) -> list[DataLink]:
    """Parse a ``<DataLinkSet>`` back into data links."""
    root = etree.fromstring(text.encode())
    links = []
    for node in root.iter("DataLink"):
        sender, router = node.find("DataSender"), node.find("DataRouter")
        links.append(DataLink(sender.get("id"), router.get("name"), router.get("ipAddress"),
                              int(router.get("port")), router.get("type", "TCP")))
    return links
