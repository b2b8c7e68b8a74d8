"""Small but structurally real media files for tests, with optional XMP metadata."""

from __future__ import annotations

import struct
import zlib

XMP_TEMPLATE = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    {rating_attr}>
   <dc:subject><rdf:Bag>{subjects}</rdf:Bag></dc:subject>
   <lr:hierarchicalSubject><rdf:Bag>{hierarchical}</rdf:Bag></lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def xmp(tags: list[str] = (), rating: int | None = None,
        hierarchical: list[str] = ()) -> bytes:
    return XMP_TEMPLATE.format(
        rating_attr=f'xmp:Rating="{rating}"' if rating is not None else "",
        subjects="".join(f"<rdf:li>{t}</rdf:li>" for t in tags),
        hierarchical="".join(f"<rdf:li>{t}</rdf:li>" for t in hierarchical),
    ).encode("utf-8")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png(width: int = 4, height: int = 4, seed: int = 0, xmp_packet: bytes | None = None,
        xmp_after_image: bool = False) -> bytes:
    """A valid RGB PNG; the XMP packet goes in an iTXt chunk, before or after the image data."""
    raw = b"".join(b"\x00" + bytes((x * 40 + y * 7 + seed) % 256 for x in range(width * 3))
                   for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    itxt = (_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp_packet)
            if xmp_packet else b"")
    idat = _png_chunk(b"IDAT", zlib.compress(raw))
    body = idat + itxt if xmp_after_image else itxt + idat
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + body
            + _png_chunk(b"IEND", b""))


def jpeg(xmp_packet: bytes | None = None, payload: bytes = b"\x00" * 64) -> bytes:
    """JPEG markers as a camera writes them: SOI, APP1 XMP, a payload, EOI."""
    out = b"\xff\xd8"
    if xmp_packet:
        data = b"http://ns.adobe.com/xap/1.0/\x00" + xmp_packet
        out += b"\xff\xe1" + struct.pack(">H", len(data) + 2) + data
    return out + b"\xff\xdb" + struct.pack(">H", len(payload) + 2) + payload + b"\xff\xd9"


def webp(xmp_packet: bytes | None = None) -> bytes:
    """RIFF/WEBP with a VP8L stub and the XMP chunk at the end, where libwebp puts it."""
    chunks = b"VP8L" + struct.pack("<I", 5) + b"\x2f\x00\x00\x00\x00" + b"\x00"
    if xmp_packet:
        pad = b"\x00" if len(xmp_packet) % 2 else b""
        chunks += b"XMP " + struct.pack("<I", len(xmp_packet)) + xmp_packet + pad
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def _box(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", 8 + len(data)) + kind + data


XMP_UUID = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")


def mp4(xmp_packet: bytes | None = None, media_bytes: int = 4096, brand: bytes = b"isom"
        ) -> bytes:
    """ftyp + mdat + moov, with XMP in a top-level uuid box at the end (as Adobe tools do)."""
    out = _box(b"ftyp", brand + b"\x00\x00\x02\x00" + brand + b"mp41")
    out += _box(b"mdat", bytes(i % 251 for i in range(media_bytes)))
    out += _box(b"moov", _box(b"mvhd", b"\x00" * 100))
    if xmp_packet:
        out += _box(b"uuid", XMP_UUID + xmp_packet)
    return out
