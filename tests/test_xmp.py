from __future__ import annotations

import pytest

from alicefs.xmp import MAX_PACKET_BYTES, PacketFinder, XmpMetadata, parse_xmp
from tests.media_samples import jpeg, mp4, png, webp, xmp


def test_sidecar_document():
    meta = parse_xmp(xmp(["portfolio", "client-work"], rating=4))
    assert meta == XmpMetadata(("portfolio", "client-work"), 4)


def test_rating_as_element_and_rejected_and_unrated():
    doc = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
           b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
           b'xmlns:xmp="http://ns.adobe.com/xap/1.0/"><xmp:Rating>3</xmp:Rating>'
           b"</rdf:Description></rdf:RDF></x:xmpmeta>")
    assert parse_xmp(doc).rating == 3
    assert parse_xmp(xmp(rating=-1)).rating == 0
    assert parse_xmp(xmp(rating=0)).rating is None
    assert parse_xmp(xmp()).empty


def test_hierarchical_keywords_give_their_leaf_and_duplicates_fold():
    meta = parse_xmp(xmp(["Paris", "travel"], hierarchical=["Places|Europe|paris",
                                                           "Events|Wedding"]))
    assert meta.tags == ("Paris", "travel", "Wedding")


def test_garbage_is_not_metadata():
    assert parse_xmp(b"<x:xmpmeta><broken") is None


@pytest.mark.parametrize("container", [
    lambda p: png(xmp_packet=p),
    lambda p: png(xmp_packet=p, xmp_after_image=True),
    lambda p: jpeg(xmp_packet=p),
    lambda p: webp(xmp_packet=p),
    lambda p: mp4(xmp_packet=p, media_bytes=300_000),
])
@pytest.mark.parametrize("chunk_size", [7, 4096, 1 << 20])
def test_packet_found_in_streamed_containers(container, chunk_size):
    data = container(xmp(["sunset"], rating=5))
    finder = PacketFinder()
    for i in range(0, len(data), chunk_size):
        finder.feed(data[i:i + chunk_size])
    assert finder.done
    assert parse_xmp(finder.packet) == XmpMetadata(("sunset",), 5)


def test_runaway_packet_is_abandoned():
    finder = PacketFinder()
    finder.feed(b"<x:xmpmeta" + b"a" * (MAX_PACKET_BYTES + 10))
    assert not finder.done
    finder.feed(xmp(["later"]))
    assert parse_xmp(finder.packet).tags == ("later",)
