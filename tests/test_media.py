from alicefs.media import classify_name, extension_of


def test_extension_is_lower_cased_and_dotted():
    assert extension_of("proj/A.PNG") == ".png"
    assert extension_of("proj/archive.tar.gz") == ".gz"
    assert extension_of("proj/README") == ""
    assert extension_of("proj/.hidden") == ""


def test_upper_case_extension_is_an_image():
    media = classify_name("proj/shot.PNG")
    assert (media.mime_type, media.category) == ("image/png", "image")


def test_media_formats_missing_from_mimetypes_are_known():
    assert classify_name("a/b.CR2").category == "image"
    assert classify_name("a/b.heic").mime_type == "image/heic"
    assert classify_name("a/b.mov").mime_type == "video/quicktime"
    assert classify_name("a/b.webm").category == "video"
    assert classify_name("a/b.flac").category == "audio"
    assert classify_name("a/b.json").category == "text"


def test_unknown_or_missing_extension_is_other():
    assert classify_name("a/noext").category == "other"
    assert classify_name("a/b.zzqq").mime_type == "application/octet-stream"
