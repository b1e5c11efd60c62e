"""Reading bytes of unknown encoding as text, and telling text from binary data."""

import re

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
CONTROL_BYTES = bytes(b for b in range(32) if not 9 <= b <= 13)
VALID_NON_ASCII = re.compile("[^\x00-\x7f\ufffd]")
LEGACY_ENCODING = "cp1252"  # Windows' Western encoding: what most non-UTF-8 text files are


def looks_binary(data: bytes) -> bool:
    """NUL bytes (outside UTF-16 text) or over 10% control characters."""
    if data.startswith(UTF16_BOMS):
        data = data.decode("utf-16", errors="replace").encode("utf-8")
    elif b"\x00" in data:
        return True
    control = len(data) - len(data.translate(None, CONTROL_BYTES))
    return bool(data) and control / len(data) > 0.1


def decode(data: bytes) -> tuple[str, str | None]:
    """Text from bytes, and a warning when they were not plain UTF-8.

    Bytes that are not UTF-8 at all (no valid multi-byte sequence anywhere) are an older
    8-bit encoding, read as Windows-1252 (Latin-1 where that has no character), so "Café"
    stays "Café". UTF-8 with a few damaged bytes keeps its good characters and has the
    damaged ones replaced by U+FFFD.
    """
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), *((bom, "utf-16") for bom in UTF16_BOMS)):
        if data.startswith(bom):
            return data.decode(codec, errors="replace"), None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="replace")
    if not VALID_NON_ASCII.search(text):  # no character decoded from a multi-byte sequence
        try:
            return data.decode(LEGACY_ENCODING), "not UTF-8: read as Windows-1252"
        except UnicodeDecodeError:
            return data.decode("latin-1"), "not UTF-8: read as Latin-1"
    replaced = text.count("\ufffd") - data.count("\ufffd".encode())
    return text, f"{replaced} undecodable bytes replaced (file is not valid UTF-8)"
