"""Media type from a file's first bytes, for files whose name says nothing (no extension, or
one we do not know). 64 bytes are enough for every signature here."""

from __future__ import annotations

from alicefs.media import MediaType, category_of

SNIFF_BYTES = 64

_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"8BPS", "image/vnd.adobe.photoshop"),
    (b"v/1\x01", "image/x-exr"),
    (b"\xff\x0a", "image/jxl"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "image/jxl"),
    (b"fLaC", "audio/flac"),
    (b"OggS", "audio/ogg"),
    (b"ID3", "audio/mpeg"),
    (b"%PDF-", "application/pdf"),
    (b"<?xpacket", "application/rdf+xml"),
    (b"<x:xmpmeta", "application/rdf+xml"),
)

_RIFF_FORMS = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}

# ISO base media (MP4, MOV, HEIF, AVIF, M4A): the major brand names the format.
_FTYP_BRANDS = {
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"3gp4": "video/3gpp",
    b"3gp5": "video/3gpp",
}

# MPEG audio frame sync followed by a valid version/layer (MP3 without an ID3 tag).
_MP3_SYNC = (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xfa")


def sniff(head: bytes) -> MediaType | None:
    """The media type the signature in `head` shows, or None when it shows none we know."""
    mime = _sniff_mime(head)
    return MediaType(mime, category_of(mime)) if mime else None


def _sniff_mime(head: bytes) -> str | None:
    for prefix, mime in _PREFIXES:
        if head.startswith(prefix):
            return mime
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_FORMS:
        return _RIFF_FORMS[head[8:12]]
    if head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12], "video/mp4")
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska or WebM
        return "video/webm" if b"webm" in head[:SNIFF_BYTES] else "video/x-matroska"
    if head[:2] in _MP3_SYNC:
        return "audio/mpeg"
    return None
