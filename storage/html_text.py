"""The text a browser or mail client would show for a piece of HTML."""

import codecs
import re
from html.parser import HTMLParser

# <meta charset="..."> or <meta http-equiv="Content-Type" content="text/html; charset=...">,
# which browsers look for in a page's first 1024 bytes.
META_CHARSET = re.compile(rb"<meta[^>]*?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
CHARSET_SNIFF_BYTES = 1024
CHARSET_FAMILIES = ("utf-8", "cp", "iso8859", "koi8", "mac-", "gb", "big5", "shift_jis", "euc",
                    "hz", "windows")


class _VisibleText(HTMLParser):
    """Visible text, with no styles, scripts or tags; the page's <title> is kept apart (its
    first one: an SVG's <title> is a picture's tooltip, not the page's)."""

    HIDDEN = frozenset({"style", "script", "head", "title", "template", "noscript"})
    INLINE = frozenset({"a", "span", "b", "i", "u", "em", "strong", "font", "small", "big",
                        "code", "sub", "sup", "abbr", "cite", "q", "s", "mark", "tt"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self.title: list[str] = []
        self.hidden = 0
        self.in_title = False
        self.in_svg = 0

    def handle_starttag(self, tag, _attrs):
        if tag == "body":  # a <head> or <title> left open (HTML allows it) ends here
            self.hidden, self.in_title = 0, False
        self.in_svg += tag == "svg"
        page_title = tag == "title" and not self.in_svg and not self.title
        self.in_title = page_title or self.in_title
        self.hidden += tag in self.HIDDEN
        self._separate(tag)

    def handle_endtag(self, tag):
        self.in_title = self.in_title and tag != "title"
        self.in_svg -= tag == "svg" and self.in_svg > 0
        self.hidden -= tag in self.HIDDEN and self.hidden > 0
        self._separate(tag)

    def _separate(self, tag):
        if tag not in self.INLINE:  # cells, rules, lists, paragraphs: words stay apart
            self.pieces.append("\n")

    def handle_data(self, data):
        if self.in_title:
            self.title.append(data)
        elif not self.hidden:
            self.pieces.append(data)


def html_document(html: str) -> tuple[str, str]:
    """The page's <title> ("" if none) and its visible text, one line per block."""
    parser = _VisibleText()
    parser.feed(_lone_brackets_as_text(html))
    if parser.rawdata.startswith("<!--"):  # a comment left open hides the rest, as in browsers
        parser.rawdata = ""
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.pieces).splitlines())
    return " ".join("".join(parser.title).split()), "\n".join(line for line in lines if line)


def _lone_brackets_as_text(html: str) -> str:
    """After the last ">", a "<" opens no tag: it is text ("if x<y", a page cut short), as
    browsers read it. Python's parser looked for each one's tag end to the end of the page,
    which took hours over a few hundred kilobytes of them."""
    html = html.replace("<!--->", "").replace("<!-->", "")  # empty comments, which Python's
    # parser takes for ones left open
    last = html.rfind(">") + 1
    tail = html[last:]
    comment = tail.find("<!--")  # left open: kept for the parser, which hides the rest
    text = tail if comment == -1 else tail[:comment]
    return html[:last] + text.replace("<", "&lt;") + tail[len(text):]


def declared_charset(data: bytes) -> str | None:
    """The text encoding a page declares for itself, read as browsers read it (Latin-1 and
    ASCII mean Windows-1252); None if it declares none, or a codec that is no charset."""
    found = META_CHARSET.search(data[:CHARSET_SNIFF_BYTES])
    try:
        name = codecs.lookup(found.group(1).decode("ascii")).name if found else ""
    except LookupError:
        return None
    if name in ("iso8859-1", "latin-1", "ascii"):
        return "cp1252"
    return name if name.startswith(CHARSET_FAMILIES) else None


def html_text(html: str) -> str:
    return html_document(html)[1]
