"""The kinds of file that import reads, by name suffix (compared in lower case)."""

MARKDOWN_SUFFIXES = {".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
TEXT_SUFFIXES = {".txt", ".text"} | MARKDOWN_SUFFIXES | HTML_SUFFIXES
WORD_SUFFIXES = {".docx", ".odt"}  # zip archives of XML
MAIL_SUFFIXES = {".eml", ".mbox"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | WORD_SUFFIXES | MAIL_SUFFIXES
# The kinds as the import error, the command line and the app name them.
SUPPORTED_NAMES = (".txt", ".md", ".docx", ".odt", ".html", ".eml", ".mbox")
