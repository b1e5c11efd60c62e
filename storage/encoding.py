"""Reading bytes of unknown encoding as text, and telling text from binary data."""

import re
import unicodedata

UTF16_BOMS = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}
CONTROL_BYTES = bytes(b for b in range(32) if not 9 <= b <= 13)
VALID_NON_ASCII = re.compile("[^\x00-\x7f\ufffd]")
LEGACY_ENCODING = "cp1252"  # Windows' Western encoding: what most non-UTF-8 text files are
# Text is mostly letters and punctuation; decoded binary data is full of control,
# unassigned, private-use and undecodable characters.
IMPLAUSIBLE = {"Cc", "Cn", "Co", "Cs"}
MOST = 0.1  # over this share of such characters (or bytes), it is not text
PLAUSIBILITY_SAMPLE = 65536  # characters looked at, spread over the text


def is_blank(text: str) -> bool:
    """No letter, digit, punctuation or symbol: only spaces, or characters that show
    nothing (zero-width spaces, byte order marks)."""
    return not any(unicodedata.category(c)[0] in "LNPS" for c in text)


def utf16_codec(data: bytes) -> str | None:
    """The UTF-16 byte order of `data`, by its BOM or, without one, by NUL bytes filling
    one side of most byte pairs (text mostly in Latin script, as Windows tools write it)."""
    if data[:2] in UTF16_BOMS:
        return "utf-16"
    pairs = len(data) // 2
    if pairs < 4:
        return None
    even, odd = data[0:2 * pairs:2].count(0), data[1:2 * pairs:2].count(0)
    if odd > pairs / 2 and even < pairs * MOST:
        return "utf-16-le"
    if even > pairs / 2 and odd < pairs * MOST:
        return "utf-16-be"
    return None


def looks_binary(data: bytes) -> bool:
    """NUL bytes (outside UTF-16 text), over 10% control bytes, or UTF-16 that does not
    decode to plausible text."""
    codec = utf16_codec(data)
    if codec is not None:
        text = data.decode(codec, errors="replace")
        sample = text[::max(1, len(text) // PLAUSIBILITY_SAMPLE)]
        odd = sum(unicodedata.category(c) in IMPLAUSIBLE or c == "\ufffd"
                  for c in sample if c not in "\t\n\r\f\v\ufeff")
        return bool(sample) and odd / len(sample) > MOST
    if b"\x00" in data:
        return True
    control = len(data) - len(data.translate(None, CONTROL_BYTES))
    return bool(data) and control / len(data) > MOST


def decode(data: bytes) -> tuple[str, str | None]:
    """Text from bytes, and a warning when they were not plain UTF-8.

    Bytes that are not UTF-8 at all (no valid multi-byte sequence anywhere) are an older
    8-bit encoding, read as Windows-1252 (Latin-1 where that has no character), so "Café"
    stays "Café". UTF-8 with a few damaged bytes keeps its good characters and has the
    damaged ones replaced by U+FFFD.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data.decode("utf-8-sig", errors="replace"), None
    codec = utf16_codec(data)
    if codec is not None:
        text = data.decode(codec, errors="replace")
        return text, None if codec == "utf-16" else f"no byte order mark: read as {codec.upper()}"
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
    return text, (f"{replaced} undecodable byte{'s' * (replaced != 1)} replaced (not valid "
                  "UTF-8)")
