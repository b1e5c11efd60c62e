"""The text of word-processor files: Word's .docx and OpenDocument's .odt.

Both are zip archives of XML. Only the body is read: no headers, footers, comments,
footnotes or text deleted under tracked changes, which are not the user's running prose.
"""

import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from oppu.storage.disk_space import human_size
from oppu.storage.errors import BrokenFile, FileTooLarge

DUBLIN_CORE_TITLE = "{http://purl.org/dc/elements/1.1/}title"
# Transitional OOXML (what Word writes) and Strict OOXML.
WORD_NAMESPACES = ("http://schemas.openxmlformats.org/wordprocessingml/2006/main",
                   "http://purl.oclc.org/ooxml/wordprocessingml/main")
MARKUP_COMPATIBILITY = "http://schemas.openxmlformats.org/markup-compatibility/2006"
OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
              ValueError)  # RuntimeError: an encrypted entry
MOST_SPACES = 100  # an ODF <text:s text:c="..."/> is a run of spaces; a huge count is damage


def _name(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


def _names(namespaces, *local: str) -> set[str]:
    return {_name(namespace, name) for namespace in namespaces for name in local}


ODT_SPACE_COUNT = _name(TEXT, "c")


def _text(element) -> str:
    return element.text or ""


def _spaces(element) -> str:
    count = element.get(ODT_SPACE_COUNT, "1")
    plain = count.isascii() and count.isdigit() and len(count) <= 9
    return " " * min(int(count) if plain else 1, MOST_SPACES)


@dataclass(frozen=True)
class Markup:
    """How a format marks its text: paragraphs, elements that stand for text (a run of text,
    a tab), and elements whose text is not the document's body."""

    paragraphs: set[str]
    symbols: dict[str, Callable[[ElementTree.Element], str]]
    skipped: set[str]
    mixed: bool  # text lies between the tags too (OpenDocument), not only in text elements


DOCX = Markup(
    paragraphs=_names(WORD_NAMESPACES, "p"),
    symbols={**dict.fromkeys(_names(WORD_NAMESPACES, "t"), _text),
             **dict.fromkeys(_names(WORD_NAMESPACES, "tab", "ptab"), lambda _: "\t"),
             **dict.fromkeys(_names(WORD_NAMESPACES, "br", "cr"), lambda _: "\n"),
             **dict.fromkeys(_names(WORD_NAMESPACES, "noBreakHyphen"), lambda _: "-")},
    # Deleted and moved-away text of tracked changes, field codes, formatting, and the copy
    # of a drawing's text that Word keeps for older readers (it would come twice).
    skipped=(_names(WORD_NAMESPACES, "del", "moveFrom", "instrText", "rPr", "pPr")
             | {_name(MARKUP_COMPATIBILITY, "Fallback")}),
    mixed=False)
ODT = Markup(
    paragraphs={_name(TEXT, "p"), _name(TEXT, "h")},
    symbols={_name(TEXT, "s"): _spaces, _name(TEXT, "tab"): lambda _: "\t",
             _name(TEXT, "line-break"): lambda _: "\n"},
    # Comments, footnotes, the record of tracked changes (deleted text), generated indexes.
    skipped=({_name(OFFICE, "annotation")}
             | {_name(TEXT, name) for name in ("note", "tracked-changes", "table-of-content",
                                               "alphabetical-index", "illustration-index",
                                               "bibliography")}),
    mixed=True)


def read_word_document(path: Path, max_bytes: int) -> tuple[str, str]:
    """The document's own title ("" if it sets none) and its body text, one paragraph per
    block; `BrokenFile` if it is damaged, `FileTooLarge` if its XML unpacks past `max_bytes`."""
    kind = path.suffix.lower()
    try:
        with zipfile.ZipFile(path) as archive:
            if kind == ".docx":
                body, title = _docx_body(path, archive, max_bytes), _docx_title(archive)
            else:
                body, title = _odt_body(path, archive, max_bytes), _odt_title(archive)
    except RecursionError:  # a RuntimeError too: before the zip errors
        raise BrokenFile(path, f"damaged {kind} file: its XML is nested too deeply") from None
    except zipfile.BadZipFile as error:
        if "not a zip file" not in str(error):
            raise BrokenFile(path, f"damaged {kind} file ({error})") from error
        # Word saves a document with a password as an encrypted container, not a zip.
        raise BrokenFile(path, f"not a {kind} document: it holds no zip archive (renamed, or "
                               "saved with a password: save it without one first)") from error
    except RuntimeError as error:
        if "encrypted" not in str(error):
            raise BrokenFile(path, f"damaged {kind} file ({error})") from error
        raise BrokenFile(path, "the document is encrypted: save it without its password "
                               "first") from error
    except ZIP_ERRORS as error:
        raise BrokenFile(path, f"damaged {kind} file ({error})") from error
    return title, body


class _Doctype(Exception):
    pass


class _RefusingDoctypes(ElementTree.TreeBuilder):
    """Neither format uses a DTD: refusing one rules out entity expansion ("billion
    laughs"), whatever encoding the XML is in."""

    def doctype(self, _name, _pubid, _system):
        raise _Doctype


def _parse(data: bytes) -> ElementTree.Element:
    parser = ElementTree.XMLParser(target=_RefusingDoctypes())
    parser.feed(data)
    return parser.close()


def _xml(path: Path, archive: zipfile.ZipFile, name: str, max_bytes: int) -> ElementTree.Element:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise BrokenFile(path, f"damaged or not a {path.suffix.lower()} file: it has no "
                               f"{name}") from None
    with archive.open(info) as part:
        data = part.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLarge(path, f"its text unpacks to over the {human_size(max_bytes)} limit")
    try:
        return _parse(data)
    except _Doctype:
        raise BrokenFile(path, f"{name} declares a DTD, which no word processor writes") from None
    except ElementTree.ParseError as error:
        raise BrokenFile(path, f"damaged {path.suffix.lower()} file: {name}: {error}") from None


def _title(root: ElementTree.Element | None) -> str:
    found = None if root is None else root.find(f".//{DUBLIN_CORE_TITLE}")
    return " ".join((found.text or "").split()) if found is not None else ""


def _optional_xml(archive: zipfile.ZipFile, name: str) -> ElementTree.Element | None:
    """A small metadata part, or None where it is missing, damaged or large."""
    try:
        info = archive.getinfo(name)
        if info.file_size > 1 << 20:
            return None
        return _parse(archive.read(info))
    except (KeyError, ElementTree.ParseError, _Doctype, *ZIP_ERRORS):
        return None


def _docx_title(archive: zipfile.ZipFile) -> str:
    return _title(_optional_xml(archive, "docProps/core.xml"))


def _odt_title(archive: zipfile.ZipFile) -> str:
    return _title(_optional_xml(archive, "meta.xml"))


def _main_part(archive: zipfile.ZipFile) -> str:
    """Where the package says its document is; Word always writes word/document.xml."""
    relations = _optional_xml(archive, "_rels/.rels")
    for relation in [] if relations is None else relations:
        if relation.get("Type", "").endswith("/officeDocument") and relation.get("Target"):
            return relation.get("Target").lstrip("/")
    return "word/document.xml"


def _docx_body(path: Path, archive: zipfile.ZipFile, max_bytes: int) -> str:
    return _paragraphs(_xml(path, archive, _main_part(archive), max_bytes), DOCX)


def _odt_body(path: Path, archive: zipfile.ZipFile, max_bytes: int) -> str:
    text = _xml(path, archive, "content.xml", max_bytes).find(f"{{{OFFICE}}}body/{{{OFFICE}}}text")
    if text is None:
        raise BrokenFile(path, "not a text document (a spreadsheet or a presentation?)")
    return _paragraphs(text, ODT)


def _paragraphs(root: ElementTree.Element, markup: Markup) -> str:
    paragraphs: list[str] = []
    _walk(root, markup, [], paragraphs)
    return "\n\n".join(kept for paragraph in paragraphs if (kept := paragraph.strip()))


def _walk(element, markup: Markup, paragraph: list[str], paragraphs: list[str]) -> None:
    """Appends the text of `element` to `paragraph`, and each paragraph it ends to
    `paragraphs`. Mixed content is the element's own text, then each child followed by the
    text after it (its tail)."""
    if markup.mixed:
        paragraph.append(element.text or "")
    for child in element:
        if (symbol := markup.symbols.get(child.tag)) is not None:
            paragraph.append(symbol(child))
        elif child.tag not in markup.skipped:
            _walk(child, markup, paragraph, paragraphs)
            if child.tag in markup.paragraphs:
                paragraphs.append("".join(paragraph))
                paragraph.clear()
        if markup.mixed:
            paragraph.append(child.tail or "")
