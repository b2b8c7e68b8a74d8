import pytest

from alicefs.sniff import sniff
from tests.media_samples import jpeg, mp4, png, webp


@pytest.mark.parametrize("data, mime", [
    (png(), "image/png"),
    (jpeg(), "image/jpeg"),
    (webp(), "image/webp"),
    (b"GIF89a\x01\x00", "image/gif"),
    (mp4(), "video/mp4"),
    (mp4(brand=b"qt  "), "video/quicktime"),
    (mp4(brand=b"heic"), "image/heic"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm", "video/webm"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
    (b"ID3\x04\x00", "audio/mpeg"),
    (b"\xff\xfb\x90\x00", "audio/mpeg"),
    (b"fLaC\x00", "audio/flac"),
])
def test_signatures(data, mime):
    assert sniff(data[:64]).mime_type == mime


def test_unknown_bytes():
    assert sniff(b"hello world") is None
    assert sniff(b"") is None
