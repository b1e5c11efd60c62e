"""Reading bytes of unknown encoding as text, and telling text from binary data."""

import re
import unicodedata

UTF16_BOMS = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}
CONTROL_BYTES = bytes(b for b in range(32) if not 9 <= b <= 13)
ASCII_BYTES = bytes(range(128))
VALID_NON_ASCII = re.compile("[^\x00-\x7f\ufffd]")
LEGACY_ENCODING = "cp1252"  # Windows' Western encoding: what most non-UTF-8 text files are
# Western European writing has few accented letters (French, among the most, about 4%);
# read as Windows-1252, other scripts come out mostly as accented Latin letters ("Ïðèâåò").
WESTERN_ACCENTED_SHARE = 0.5
# Guessing needs text: on a few words it reads Russian as Chinese. The code pages that
# older editors saved non-Western writing in (no EBCDIC or UTF-7 look-alikes).
FEWEST_TO_GUESS = 40
LEGACY_CANDIDATES = ["cp1250", "cp1251", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257",
                     "koi8_r", "koi8_u", "cp866", "gb18030", "big5", "cp932", "euc_jp", "cp949"]
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
    one side of most byte pairs (text mostly in Latin script, as Windows tools write it)
    or, in Chinese, Japanese or Korean text, mostly one side of just the pairs of its
    spaces, digits and line ends, where the whole decodes as plausible text."""
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
    if len(data) % 2 or max(odd, even) < 4 * min(odd, even) + 1:
        return None
    try:
        data.replace(b"\x00", b"").decode("utf-8")
        return None  # UTF-8 or ASCII text with stray NULs, which also decodes as Chinese
    except UnicodeDecodeError:
        pass
    codec = "utf-16-le" if odd > even else "utf-16-be"
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:  # a lone surrogate: not UTF-16
        return None
    if any(unicodedata.category(c) == "Cc" for c in text if c not in "\t\n\r\f\v"):
        return None  # its NULs pair with control bytes, not with spaces and line ends
    return codec if _implausible_share(text) <= MOST else None


def _implausible_share(text: str) -> float:
    """The share of control, unassigned, private-use and undecodable characters."""
    sample = text[::max(1, len(text) // PLAUSIBILITY_SAMPLE)]
    odd = sum(unicodedata.category(c) in IMPLAUSIBLE or c == "\ufffd"
              for c in sample if c not in "\t\n\r\f\v\ufeff")
    return odd / len(sample) if sample else 0.0


def looks_binary(data: bytes) -> bool:
    """NUL bytes (outside UTF-16 text), over 10% control bytes, or UTF-16 that does not
    decode to plausible text."""
    codec = utf16_codec(data)
    if codec is not None:
        return _implausible_share(data.decode(codec, errors="replace")) > MOST
    if b"\x00" in data:
        return True
    control = len(data) - len(data.translate(None, CONTROL_BYTES))
    return bool(data) and control / len(data) > MOST


def decode(data: bytes, declared: str | None = None) -> tuple[str, str | None]:
    """Text from bytes, and a warning when they were not plain UTF-8.

    `declared` is the encoding the text names for itself (an HTML page's charset), used
    when the bytes are not UTF-8. Bytes with no valid multi-byte sequence, or mostly
    non-ASCII with more invalid bytes than valid characters, are an older encoding (see `_legacy_text`). UTF-8
    with a few damaged bytes keeps its good characters and has the damaged ones replaced
    by U+FFFD.
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
    if declared:
        try:
            return data.decode(declared), None
        except (LookupError, UnicodeError):  # unknown, or "undefined" (a codec that refuses)
            pass
    text = data.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - data.count("\ufffd".encode())
    valid = len(VALID_NON_ASCII.findall(text))
    mostly_high = 2 * len(data.translate(None, ASCII_BYTES)) >= len(data)
    if not valid or (replaced > valid and mostly_high):
        # No character decoded from a multi-byte sequence; or mostly non-ASCII bytes, more
        # of them bad than good: a non-Latin script in an older encoding whose byte pairs
        # happen to be valid UTF-8 here and there (as Chinese GBK's often are), not UTF-8
        # with a damaged stretch or a pasted quote.
        return _legacy_text(data)
    return text, (f"{replaced} undecodable byte{'s' * (replaced != 1)} replaced (not valid "
                  "UTF-8)")


def _legacy_text(data: bytes) -> tuple[str, str]:
    """Text that is not UTF-8. Mostly Latin letters, it is Windows' Western encoding (so
    "Café" stays "Café"), which guessers often mistake for a Central European one; other
    writing (Cyrillic, Greek, Chinese, Japanese, ...) is in the encoding that reads it most
    plausibly."""
    try:
        western, name = data.decode(LEGACY_ENCODING), "Windows-1252"
    except UnicodeDecodeError:
        western, name = data.decode("latin-1"), "Latin-1"
    letters = [c for c in western[:PLAUSIBILITY_SAMPLE] if c.isalpha()]
    accented = sum(c > "\x7f" for c in letters)
    if accented <= len(letters) * WESTERN_ACCENTED_SHARE or accented < FEWEST_TO_GUESS:
        return western, f"not UTF-8: read as {name}"
    from charset_normalizer import from_bytes

    guess = from_bytes(data, cp_isolation=LEGACY_CANDIDATES).best()
    if guess is None:
        return western, f"not UTF-8: read as {name}"
    return str(guess), f"not UTF-8: read as {guess.encoding}"
