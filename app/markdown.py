"""Markdown as the app shows it: rendered, with any HTML or image in it left inert."""

import re

from PySide6.QtGui import QTextDocument

BODY_TAG = re.compile(r"<body[^>]*>")
IMAGE_TAG = re.compile(r"<img[^>]*>")
# HTML in the Markdown is shown as text, never interpreted.
MARKDOWN = (QTextDocument.MarkdownFeature.MarkdownDialectGitHub
            | QTextDocument.MarkdownFeature.MarkdownNoHTML)
# Qt draws headings at up to xx-large: in a chat bubble or beside a list, a "# Title" would
# shout. Only headings carry a font size in rendered Markdown.
FONT_SIZE = re.compile(r"font-size:(xx-large|x-large|large);")
HEADING_SIZES = {"xx-large": "large", "x-large": "medium", "large": "medium"}
# Code, in a block or inline, on a tinted ground so it stands apart from the prose.
CODE = re.compile(r"<pre style=\"|<span style=\" font-family:'monospace';")
CODE_GROUND = "background-color:#eef1f8;"


def markdown_html(text: str) -> str:
    document = QTextDocument()
    document.setMarkdown(text, MARKDOWN)
    # The document's own default font would override the widget's (from the stylesheet),
    # and an image would make the widget load whatever file the text names.
    html = IMAGE_TAG.sub("[image]", BODY_TAG.sub("<body>", document.toHtml(), count=1))
    html = CODE.sub(lambda code: code.group(0) + CODE_GROUND, html)
    return FONT_SIZE.sub(lambda size: f"font-size:{HEADING_SIZES[size.group(1)]};", html)
