"""Word (.docx) and OpenDocument (.odt) files built as their writers lay them out."""

import zipfile
from pathlib import Path

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
RELATIONS = ('<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
             '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
             'relationships/officeDocument" Target="{target}"/></Relationships>')
CORE = ('<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/'
        'core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}'
        '</dc:title></cp:coreProperties>')
ODT_MIME = "application/vnd.oasis.opendocument.text"
ODT_NAMESPACES = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
                  'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
                  'xmlns:dc="http://purl.org/dc/elements/1.1/"')


def docx(path: Path, body: str, title: str = "", part: str = "word/document.xml") -> Path:
    """A .docx whose <w:body> holds `body` (WordprocessingML, prefix w:)."""
    files = {"_rels/.rels": RELATIONS.format(target=part),
             part: (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                    f'<w:document xmlns:w="{W}" xmlns:mc="http://schemas.openxmlformats.org/'
                    f'markup-compatibility/2006"><w:body>{body}</w:body></w:document>')}
    if title:
        files["docProps/core.xml"] = CORE.format(title=title)
    return _zip(path, files)


def odt(path: Path, text: str, title: str = "", kind: str = "text") -> Path:
    """An .odt whose <office:text> (or other `kind` of body) holds `text` (prefix text:)."""
    files = {"mimetype": ODT_MIME,
             "content.xml": (f'<office:document-content {ODT_NAMESPACES}><office:body>'
                             f'<office:{kind}>{text}</office:{kind}></office:body>'
                             '</office:document-content>')}
    if title:
        files["meta.xml"] = (f'<office:document-meta {ODT_NAMESPACES}><office:meta><dc:title>'
                             f'{title}</dc:title></office:meta></office:document-meta>')
    return _zip(path, files)


def run(text: str, properties: str = "") -> str:
    """A Word run of text, with its run properties."""
    return f"<w:r>{properties}<w:t xml:space=\"preserve\">{text}</w:t></w:r>"


def paragraph(*runs: str, style: str = "") -> str:
    properties = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
    return f"<w:p>{properties}{''.join(runs)}</w:p>"


def _zip(path: Path, files: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return path
