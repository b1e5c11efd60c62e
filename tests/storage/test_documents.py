"""Word, OpenDocument and HTML files: their text and title are stored (damaged ones:
test_bad_input.py)."""

from oppu.storage.models import Document
from tests.storage.conftest import assert_consistent, write
from tests.support.office_files import docx, odt, paragraph, run


def stored(writing, path) -> Document:
    [result] = writing.add_paths([path])
    assert result.status == "added", result.line()
    with writing.store.read() as session:
        return session.get(Document, result.document_ids[0])


def test_a_word_document_is_stored_as_its_body_text_under_its_title(writing, tmp_path):
    body = "".join([
        paragraph(run("Dear Ann"), style="Heading1"),
        paragraph(run("It was a "), run("bright", "<w:rPr><w:b/></w:rPr>"), run(" cold day"),
                  "<w:r><w:tab/></w:r>", run("in April"), "<w:proofErr w:type=\"spellStart\"/>",
                  "<w:r><w:br/></w:r>", run("and the clocks were striking thirteen.")),
        # a tracked change: the deletion goes, the insertion stays
        paragraph(run("I "), "<w:del w:id=\"1\"><w:r><w:delText>never </w:delText></w:r></w:del>",
                  "<w:ins w:id=\"2\">" + run("always ") + "</w:ins>", run("write twice.")),
        # a field (a page number): its code goes, its shown result stays
        paragraph(run("Page "), "<w:r><w:fldChar w:fldCharType=\"begin\"/></w:r>",
                  "<w:r><w:instrText>PAGE \\* MERGEFORMAT</w:instrText></w:r>",
                  "<w:r><w:fldChar w:fldCharType=\"separate\"/></w:r>", run("3"),
                  "<w:r><w:fldChar w:fldCharType=\"end\"/></w:r>"),
        # a text box, which Word also keeps as a fallback copy for older readers
        paragraph("<w:r><mc:AlternateContent><mc:Choice Requires=\"wps\"><w:drawing>"
                  "<w:txbxContent>" + paragraph(run("Boxed words.")) + "</w:txbxContent>"
                  "</w:drawing></mc:Choice><mc:Fallback><w:pict><w:txbxContent>"
                  + paragraph(run("Boxed words.")) + "</w:txbxContent></w:pict></mc:Fallback>"
                  "</mc:AlternateContent></w:r>"),
        "<w:tbl><w:tr><w:tc>" + paragraph(run("Cell one")) + "</w:tc><w:tc>"
        + paragraph(run("Café, 東京 🙂")) + "</w:tc></w:tr></w:tbl>",
        paragraph(), "<w:sectPr/>",
    ])
    document = stored(writing, docx(tmp_path / "letter.docx", body, title="Letters to Ann"))

    assert document.title == "Letters to Ann" and document.source == "file"
    assert document.text == ("Dear Ann\n\nIt was a bright cold day\tin April\nand the clocks "
                             "were striking thirteen.\n\nI always write twice.\n\nPage 3\n\n"
                             "Boxed words.\n\nCell one\n\nCafé, 東京 🙂")
    assert_consistent(writing)


def test_a_document_without_a_title_is_named_by_its_file(writing, tmp_path):
    document = stored(writing, docx(tmp_path / "Draft 3.docx", paragraph(run("Some words."))))
    assert document.title == "Draft 3"


def test_the_package_says_where_its_document_is(writing, tmp_path):
    path = docx(tmp_path / "moved.docx", paragraph(run("Elsewhere.")), part="word/document2.xml")
    assert stored(writing, path).text == "Elsewhere."


def test_an_opendocument_text_is_stored_without_its_notes_and_comments(writing, tmp_path):
    text = ('<text:tracked-changes><text:changed-region><text:deletion><text:p>DELETED'
            '</text:p></text:deletion></text:changed-region></text:tracked-changes>'
            '<text:h text:outline-level="1">Heading one</text:h>'
            '<text:p>Hello<text:s text:c="3"/>spaced<text:tab/>tabbed<text:span> in a span'
            '</text:span> and a tail.<text:note text:note-class="footnote"><text:note-citation>1'
            '</text:note-citation><text:note-body><text:p>FOOTNOTE</text:p></text:note-body>'
            '</text:note><office:annotation><text:p>COMMENT</text:p></office:annotation>'
            '<text:line-break/>After the break.</text:p>'
            '<text:p>Spaces<text:s text:c="999999999"/>end<text:s text:c="x"/>.</text:p>')
    document = stored(writing, odt(tmp_path / "story.odt", text, title="An ODT title"))

    assert document.title == "An ODT title"
    assert document.text == ("Heading one\n\nHello   spaced\ttabbed in a span and a tail.\n"
                             f"After the break.\n\nSpaces{' ' * 100}end .")


def test_a_web_page_is_stored_as_its_visible_text_under_its_title(writing, tmp_path):
    page = ("<!DOCTYPE html><html><head><title>My  blog &amp; me</title><style>p{}</style>"
            "<script>var x = 1;</script></head><body><h1>On walking</h1><p>I walk <em>every"
            "</em> day.</p><noscript>Enable scripts</noscript></body></html>")
    document = stored(writing, write(tmp_path / "post.html", page))
    assert (document.title, document.text) == ("My blog & me", "On walking\nI walk every day.")


def test_an_svg_picture_s_title_is_neither_the_page_s_title_nor_its_text(writing, tmp_path):
    icon = "<svg><title>Menu icon</title><path d='M0 0'/></svg>"
    document = stored(writing, write(tmp_path / "a.html", f"<body>{icon}<p>Walks.</p></body>"))
    assert (document.title, document.text) == ("a", "Walks.")
    page = f"<head><title>Mine</title></head><body>{icon}<p>Runs.</p><title>x</title></body>"
    assert stored(writing, write(tmp_path / "b.html", page)).title == "Mine"


def test_an_unclosed_title_ends_where_the_body_starts(writing, tmp_path):
    document = stored(writing, write(tmp_path / "page.htm", "<title>Half<body>Body text."))
    assert (document.title, document.text) == ("Half", "Body text.")
