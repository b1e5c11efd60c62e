"""Markdown as the app shows it: rendered, with any HTML or image in it left inert."""

import re

from PySide6.QtGui import QTextDocument

BODY_TAG = re.compile(r"<body[^>]*>")
IMAGE_TAG = re.compile(r"<img[^>]*>")
# HTML in the Markdown is shown as text, never interpreted.
MARKDOWN = (QTextDocument.MarkdownFeature.MarkdownDialectGitHub
            | QTextDocument.MarkdownFeature.MarkdownNoHTML)


def markdown_html(text: str) -> str:
    document = QTextDocument()
    document.setMarkdown(text, MARKDOWN)
    # The document's own default font would override the widget's (from the stylesheet),
    # and an image would make the widget load whatever file the text names.
    return IMAGE_TAG.sub("[image]", BODY_TAG.sub("<body>", document.toHtml(), count=1))
