"""Media type of a file from its name: the MIME type and the category rules match on.

Extensions are matched case-insensitively (`.PNG` is an image). The table covers the formats
media libraries hold, including those the standard `mimetypes` module does not know (RAW
photo formats, EXR, HEIC, AVIF); anything else falls back to `mimetypes`.
"""

from __future__ import annotations

import functools
import mimetypes
import posixpath
from dataclasses import dataclass

CATEGORIES: tuple[str, ...] = ("image", "video", "audio", "text", "other")

UNKNOWN_MIME = "application/octet-stream"

_MEDIA_EXTENSIONS: dict[str, str] = {
    # images
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".avif": "image/avif",
    ".jxl": "image/jxl",
    ".svg": "image/svg+xml",
    ".ico": "image/vnd.microsoft.icon",
    ".psd": "image/vnd.adobe.photoshop",
    ".exr": "image/x-exr",
    ".hdr": "image/vnd.radiance",
    ".dng": "image/x-adobe-dng",
    ".cr2": "image/x-canon-cr2",
    ".cr3": "image/x-canon-cr3",
    ".nef": "image/x-nikon-nef",
    ".arw": "image/x-sony-arw",
    ".orf": "image/x-olympus-orf",
    ".rw2": "image/x-panasonic-rw2",
    ".raf": "image/x-fuji-raf",
    # video
    ".mp4": "video/mp4",
    ".m4v": "video/x-m4v",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
    ".wmv": "video/x-ms-wmv",
    ".flv": "video/x-flv",
    ".mpg": "video/mpeg",
    ".mpeg": "video/mpeg",
    ".m2ts": "video/mp2t",
    ".mts": "video/mp2t",
    ".ts": "video/mp2t",
    ".3gp": "video/3gpp",
    ".ogv": "video/ogg",
    # audio
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/opus",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".aif": "audio/aiff",
    ".aiff": "audio/aiff",
    ".wma": "audio/x-ms-wma",
    # text and sidecars
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".csv": "text/csv",
    ".xml": "application/xml",
    ".xmp": "application/rdf+xml",
    ".html": "text/html",
    ".srt": "application/x-subrip",
    ".vtt": "text/vtt",
}

# MIME types outside text/* that people still think of as text (prompts, metadata, captions).
_TEXT_LIKE = frozenset(
    {"application/json", "application/yaml", "application/xml", "application/rdf+xml",
     "application/x-subrip"}
)


@dataclass(frozen=True)
class MediaType:
    mime_type: str
    category: str


def extension_of(name: str) -> str:
    """The lower-cased extension with its dot (`.png`), or "" when the name has none."""
    base = posixpath.basename(name)
    ext = posixpath.splitext(base)[1]
    return ext.lower() if ext != base else ""


_MAJOR_CATEGORIES = {name: name for name in ("image", "video", "audio", "text")}


def category_of(mime_type: str) -> str:
    # The constant, not the split's new string: every file in memory holds its category.
    major = _MAJOR_CATEGORIES.get(mime_type.split("/", 1)[0])
    if major is not None:
        return major
    if mime_type in _TEXT_LIKE:
        return "text"
    return "other"


def classify_name(name: str) -> MediaType:
    """The media type a file's name implies; `other` with an octet-stream MIME when unknown."""
    return _media_of_extension(extension_of(name))


@functools.lru_cache(maxsize=1024)
def _media_of_extension(ext: str) -> MediaType:
    # Cached: one MediaType (and one MIME string) per extension, however many files.
    mime = _MEDIA_EXTENSIONS.get(ext)
    if mime is None and ext:
        mime = mimetypes.types_map.get(ext) or mimetypes.common_types.get(ext)
    if mime is None:
        return MediaType(UNKNOWN_MIME, "other")
    return MediaType(mime, category_of(mime))
