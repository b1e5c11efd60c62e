"""The title of a Markdown file: its opening ATX heading ("## Title ##") as plain text, with
its closing hashes, inline Markdown and HTML gone: "**Bold** `x` [link](url)" is "Bold x link".
"""

import html
import re

# Up to three spaces before it (four make a code block).
HEADING = re.compile(r" {0,3}#{1,6}[ \t]+(.+)")
CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
# Literal text in Markdown, kept as it is: a code span (its backticks go), an autolink (its
# angle brackets go), a backslash escape (its backslash goes).
LITERAL = re.compile(r"(?<!`)(?P<ticks>`+)(?!`)(?P<code>.+?)(?<!`)(?P=ticks)(?!`)"
                     r"|<(?P<link>[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*|[^\s<>@]+@[^\s<>]+)>"
                     r"|\\(?P<escaped>[!-/:-@\[-`{-~])")
# An inline HTML tag, "<em>" or "</span>", which goes.
TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
# A link or image becomes its text: "[text](url)", "![alt](url "title")", "[text][ref]".
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\](?:\((?:[^()]|\([^()]*\))*\)|\[[^\[\]]*\])")
# Emphasis around some text: *, **, ***, the same with _ (not inside a word: snake_case
# stays), and ~~strikethrough~~.
EMPHASIS = re.compile(r"(?<!\*)(\*{1,3})(?=[^\s*])(.+?)(?<=[^\s*])\1(?!\*)"
                      r"|(?<!\w)(_{1,3})(?=[^\s_])(.+?)(?<=[^\s_])\3(?!\w)"
                      r"|~~(?=[^\s~])(.+?)(?<=[^\s~])~~")
KEPT = re.compile("\x00([0-9]+)\x00")
# How much of a heading is read for a title, which keeps 500 characters: the patterns above
# take time that grows with the square of a line's length (a one-line file of asterisks).
HEADING_READ = 1000


def heading_title(text: str) -> str | None:
    """The opening heading of Markdown `text` as plain text; None if it opens otherwise."""
    first_line = next((line.rstrip() for line in text.splitlines() if line.strip()), "")
    heading = HEADING.fullmatch(first_line)
    return (plain_heading(heading.group(1)) or None) if heading else None


def plain_heading(markdown: str) -> str:
    """A heading's text as it reads: "**Bold** `x` [link](url) ##" is "Bold x link"."""
    kept: list[str] = []

    def keep(literal: re.Match) -> str:
        code = literal["code"]
        if code is not None and code.startswith(" ") and code.endswith(" ") and code.strip():
            code = code[1:-1]  # "`` `x` ``": the spaces only set the backticks apart
        kept.append(code if code is not None else literal["link"] or literal["escaped"])
        return f"\x00{len(kept) - 1}\x00"

    markdown = markdown[:HEADING_READ].replace("\x00", "")
    text = TAG.sub("", LITERAL.sub(keep, CLOSING_HASHES.sub("", markdown)))
    for pattern, inner in ((LINK, lambda m: m[1]),
                           (EMPHASIS, lambda m: m[2] or m[4] or m[5])):
        while (stripped := pattern.sub(inner, text)) != text:  # nested: [**a**](u), ***a***
            text = stripped
    return " ".join(KEPT.sub(lambda m: kept[int(m[1])], html.unescape(text)).split())
