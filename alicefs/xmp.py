"""Tags and ratings from XMP: sidecar files and packets embedded in images and videos.

The conventions of Lightroom, darktable and digiKam:
- `xmp:Rating` (attribute or element): 1-5 are stars; 0 means unrated; -1 (rejected) is 0 stars.
- `dc:subject` (a bag of keywords) gives tags.
- `lr:hierarchicalSubject` (`Places|Europe|Paris`) and `digiKam:TagsList`
  (`Places/Europe/Paris`) give their leaf (`Paris`) as a tag.
Tags are de-duplicated case-insensitively, keeping the first spelling seen.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass

log = logging.getLogger(__name__)

NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_XMP = "http://ns.adobe.com/xap/1.0/"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_LR = "http://ns.adobe.com/lightroom/1.0/"
NS_DIGIKAM = "http://www.digikam.org/ns/1.0/"

PACKET_START = b"<x:xmpmeta"
PACKET_END = b"</x:xmpmeta>"
MAX_PACKET_BYTES = 4 << 20


@dataclass(frozen=True)
class XmpMetadata:
    tags: tuple[str, ...] = ()
    rating: int | None = None  # stars 0-5; None when unrated

    @property
    def empty(self) -> bool:
        return not self.tags and self.rating is None


def parse_xmp(data: bytes) -> XmpMetadata | None:
    """The tags and rating in an XMP document or packet; None when it is not parseable XML."""
    start = data.find(PACKET_START)
    if start >= 0:
        end = data.find(PACKET_END, start)
        if end >= 0:
            data = data[start:end + len(PACKET_END)]
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        log.debug("unparseable XMP (%s)", exc)
        return None
    return XmpMetadata(tags=_tags(root), rating=_rating(root))


def _rating(root: ET.Element) -> int | None:
    values = [el.get(f"{{{NS_XMP}}}Rating") for el in root.iter(f"{{{NS_RDF}}}Description")]
    values += [el.text for el in root.iter(f"{{{NS_XMP}}}Rating")]
    for value in values:
        if value is None or not value.strip():
            continue
        try:
            number = round(float(value))
        except ValueError:
            continue
        if number < 0:
            return 0  # rejected
        if number == 0:
            return None  # the XMP spec's "unrated"
        return min(number, 5)
    return None


def _list_items(root: ET.Element, tag: str) -> list[str]:
    items = []
    for container in root.iter(tag):
        items += [li.text.strip() for li in container.iter(f"{{{NS_RDF}}}li")
                  if li.text and li.text.strip()]
    return items


def _tags(root: ET.Element) -> tuple[str, ...]:
    found = _list_items(root, f"{{{NS_DC}}}subject")
    hierarchical = _list_items(root, f"{{{NS_LR}}}hierarchicalSubject")
    found += [t.split("|")[-1].strip() for t in hierarchical]
    found += [t.split("/")[-1].strip() for t in _list_items(root, f"{{{NS_DIGIKAM}}}TagsList")]
    seen: dict[str, str] = {}
    for tag in found:
        if tag:
            seen.setdefault(tag.casefold(), tag)
    return tuple(seen.values())


class PacketFinder:
    """Finds an embedded XMP packet in a file streamed in chunks, so tags and ratings come out
    of the same read that hashes the file (no second pass over a video)."""

    def __init__(self) -> None:
        self._tail = b""  # end of the previous chunk, in case a marker straddles two chunks
        self._collected: bytearray | None = None
        self.packet: bytes | None = None

    @property
    def done(self) -> bool:
        return self.packet is not None

    def feed(self, chunk: bytes) -> None:
        if self.packet is not None:
            return
        if self._collected is None:
            window = self._tail + chunk
            start = window.find(PACKET_START)
            if start < 0:
                self._tail = window[-(len(PACKET_START) - 1):]
                return
            self._collected = bytearray(window[start:])
        else:
            self._collected += chunk
        end = self._collected.find(PACKET_END)
        if end >= 0:
            self.packet = bytes(self._collected[:end + len(PACKET_END)])
            self._collected = None
        elif len(self._collected) > MAX_PACKET_BYTES:
            self._collected = None  # not a real packet: look for the next one
            self._tail = b""
