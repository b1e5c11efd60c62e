"""Every class of bad input: a typed error from add_file, one line from add_paths, no loss."""

import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest

from oppu.storage.drafts import printable
from oppu.storage.errors import (
    BinaryFile,
    BrokenFile,
    EmptyInput,
    FileTooLarge,
    IngestError,
    MailAddressNotSet,
    UnreadablePath,
    UnsupportedType,
)
from oppu.storage.readers import folder_problem, read_file, walk
from oppu.storage.writing import Writing
from tests.storage.conftest import ME, assert_refused, write
from tests.support.office_files import docx, odt, paragraph, run

LIMIT = 16384  # bytes: the size limit these tests configure


def fifo(path):
    os.mkfifo(path)
    return path


BAD_FILES = {
    "binary": ("data.txt", lambda p: write(p, bytes(range(200))), BinaryFile, "binary"),
    "empty": ("empty.txt", lambda p: write(p, b""), EmptyInput, "empty file"),
    "whitespace only": ("blank.md", lambda p: write(p, " \n\t\r\n  "), EmptyInput, "whitespace"),
    "invisible characters only": ("blank.txt", lambda p: write(
        p, "\u00a0\u2003\u3000\n\u200b\ufeff\u200b"), EmptyInput, "invisible characters"),
    "random bytes after a UTF-16 mark": ("noise.txt", lambda p: write(
        p, b"\xff\xfe" + bytes(range(32, 256))), BinaryFile, "binary"),
    "over the size limit": ("big.txt", lambda p: write(p, "word " * LIMIT), FileTooLarge,
                            "over the"),
    "not an mbox": ("box.mbox", lambda p: write(p, "Subject: hi\n\nno From_ line"),
                    BrokenFile, "not an mbox"),
    "headerless eml": ("note.eml", lambda p: write(p, "just words, no headers"),
                       BrokenFile, "no headers"),
    "no mail of mine": ("other.eml", lambda p: write(p, "From: bob@example.com\n\nhello"),
                        EmptyInput, "no mail sent by you"),
    "missing path": ("gone.txt", lambda p: p, UnreadablePath, "no such file"),
    "fifo": ("pipe.txt", fifo, UnreadablePath, "not a regular file"),
    "unsupported suffix": ("paper.pdf", lambda p: write(p, "%PDF-1.4 text"), UnsupportedType,
                           "unsupported file type '.pdf'"),
}


def bomb(path):
    """A document whose XML unpacks to far more than the file limit."""
    return docx(path, paragraph(run("x" * 50 * LIMIT)))


def password_protected(path):
    """What Word saves with a password: an OLE compound file, no zip archive."""
    return write(path, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))


def without_document(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("_rels/.rels", "<Relationships/>")
    return path


def truncated(path):
    data = docx(path, paragraph(run("words " * 200))).read_bytes()
    return write(path, data[: len(data) // 2])


LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
          '"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><w:p>&lol2;</w:p>')

BAD_DOCUMENTS = {  # word processors' zip archives, and HTML
    "random bytes": ("noise.docx", lambda p: write(p, bytes(range(256)) * 4), BrokenFile,
                     ("not a .docx document: it holds no zip archive (renamed, or saved with a "
                      "password: save it without one first)")),
    "password protected": ("secret.docx", password_protected, BrokenFile, "password"),
    "no document inside": ("empty.docx", without_document, BrokenFile,
                           "it has no word/document.xml"),
    "cut off": ("cut.docx", truncated, BrokenFile, "not a .docx document"),
    "nested too deeply": ("deep.docx", lambda p: docx(p, "<a>" * 1500 + "</a>" * 1500),
                          BrokenFile, "damaged .docx file: its XML is nested too deeply"),
    "a DTD in UTF-16": ("lol16.docx", lambda p: _replace_part(
        docx(p, ""), "word/document.xml", LAUGHS.replace('"1.0"?>', '"1.0" encoding="UTF-16"?>')
        .encode("utf-16")), BrokenFile, "declares a DTD"),
    "broken XML": ("bad.docx", lambda p: docx(p, "<w:p><w:r>"), BrokenFile,
                   "damaged .docx file: word/document.xml"),
    "entity expansion": ("lol.odt", lambda p: _replace_part(odt(p, ""), "content.xml", LAUGHS),
                         BrokenFile, "declares a DTD"),
    "unpacks over the limit": ("bomb.docx", bomb, FileTooLarge,
                               "its text unpacks to over the 16 KB limit"),
    "no text": ("blank.docx", lambda p: docx(p, paragraph() + paragraph(run("  "))), EmptyInput,
                "no text in this file"),
    "a spreadsheet named .odt": ("sheet.odt", lambda p: odt(p, "", kind="spreadsheet"),
                                 BrokenFile, "not a text document"),
    "web page with no visible text": ("empty.html", lambda p: write(
        p, "<html><head><title>T</title><script>x()</script></head><body> </body></html>"),
        EmptyInput, "no text in this file"),
}


def _replace_part(path, name: str, content: str | bytes):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, content)
    return path


@pytest.fixture
def limited(profile):
    """A Writing with a tiny size limit and a mail address, holding one earlier note."""
    profile.set("mail_addresses", ME)
    writing = Writing(profile.store, profile.index, max_file_bytes=LIMIT,
                      mail_addresses=frozenset({ME}))
    writing.add_note("Something stored before the bad input arrived.")
    return writing


@pytest.mark.parametrize("case", [*BAD_FILES, *BAD_DOCUMENTS])
def test_bad_file_raises_a_typed_error_and_is_reported_in_one_line(limited, tmp_path, case):
    name, make, error_type, reason = {**BAD_FILES, **BAD_DOCUMENTS}[case]
    assert_refused(limited, make(tmp_path / name), error_type, reason)


def test_a_folder_is_not_a_file_and_an_empty_one_is_reported(writing, tmp_path):
    folder = tmp_path / "looks like.txt"
    folder.mkdir()
    with pytest.raises(UnreadablePath, match="a folder, not a file"):
        writing.add_file(folder)
    [result] = writing.add_paths([folder])
    assert (result.status, result.reason) == ("skipped", "no files in this folder")
    write(folder / ".notes" / "draft.txt", "Hidden away from the import.")
    [result] = writing.add_paths([folder])
    hidden = "no files in this folder but hidden ones (names starting with '.'), which are skipped"
    assert (result.status, result.reason) == ("skipped", hidden)


def test_mail_needs_the_users_address_first(writing, tmp_path):
    path = write(tmp_path / "sent.eml", f"From: {ME}\nSubject: s\n\nbody")
    with pytest.raises(MailAddressNotSet, match="set your own email address"):
        writing.add_file(path)


def test_an_older_8_bit_encoding_is_read_as_windows_1252_and_reported(writing, tmp_path):
    path = write(tmp_path / "latin1.txt", "Caf\xe9 cr\xe8me, na\xefve \u2013 \u20ac5".encode("cp1252"))
    result = writing.add_file(path)
    assert (result.status, result.reason) == ("added", "not UTF-8: read as Windows-1252")
    assert writing.get(result.document_ids[0]).text == "Caf\xe9 cr\xe8me, na\xefve \u2013 \u20ac5"
    assert "Windows-1252" in writing.add_paths([path])[0].line()


DIARIES = {  # a few lines of a diary, as older editors in each language saved them
    "cp1251": "Привет! Сегодня я снова писал дневник, как и каждый день.\n" * 3,
    "koi8_r": "Привет, как дела? Сегодня хорошая погода, и мы пойдём гулять в парк.\n" * 3,
    # from here on, pairs of bytes are now and then valid UTF-8 by chance: these were read
    # as damaged UTF-8, every other character a U+FFFD
    "gb18030": "我们今天去公园散步，天气很好。孩子们在草地上玩耍，老人们在树下下棋。\n" * 3,
    "big5": "今天天氣很好，我們去公園散步。孩子們在草地上玩，老人們在樹下下棋。\n" * 3,
    "cp932": "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。\n" * 3,
    "euc_jp": "何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。\n" * 3,
}


@pytest.mark.parametrize("encoding", DIARIES)
def test_writing_in_other_scripts_is_read_in_its_own_encoding(writing, tmp_path, encoding):
    """Read as Windows-1252, Russian became "Ïðèâåò"."""
    path = write(tmp_path / "diary.txt", DIARIES[encoding].encode(encoding))
    result = writing.add_file(path)
    assert (result.status, result.reason) == ("added", f"not UTF-8: read as {encoding}")
    assert writing.get(result.document_ids[0]).text == DIARIES[encoding]


def test_a_web_page_is_read_in_the_encoding_it_declares(writing, tmp_path):
    page = ('<html><head><meta http-equiv="Content-Type" content="text/html; '
            'charset=windows-1251"><title>Дневник</title></head><body>Привет, мир</body></html>')
    result = writing.add_file(write(tmp_path / "page.html", page.encode("cp1251")))
    assert (result.status, result.reason) == ("added", "")
    document = writing.get(result.document_ids[0])
    assert (document.title, document.text) == ("Дневник", "Привет, мир")
    # Latin-1 declared means Windows-1252, as browsers read it: curly quotes, no controls
    latin = '<meta charset="iso-8859-1"><p>\u201cCaf\xe9\u201d \u2013 ok</p>'.encode("cp1252")
    result = writing.add_file(write(tmp_path / "latin.html", latin))
    assert writing.get(result.document_ids[0]).text == "\u201cCaf\xe9\u201d \u2013 ok"


def test_damaged_bytes_in_utf8_text_are_replaced_and_reported(writing, tmp_path):
    path = write(tmp_path / "damaged.txt", "Caf\xe9 cr\xe8me".encode() + b" \xff\xfe end")
    result = writing.add_file(path)
    assert (result.status, result.reason) == (
        "added", "2 undecodable bytes replaced (not valid UTF-8)")
    assert writing.get(result.document_ids[0]).text == "Caf\xe9 cr\xe8me \ufffd\ufffd end"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_text_with_a_byte_order_mark_is_text(writing, tmp_path, encoding):
    bom = b"\xfe\xff" if encoding == "utf-16-be" else b""
    path = write(tmp_path / "notepad.txt", bom + "Caf\xe9 notes, written on Windows.".encode(encoding))
    result = writing.add_file(path)
    assert result.status == "added"
    assert writing.get(result.document_ids[0]).text == "Caf\xe9 notes, written on Windows."


NO_MARK_TEXTS = [
    "Dear diary, caf\xe9 at noon. Notepad saved this without a mark.",
    # NULs only in the spaces, digits and line ends (and in 가, U+AC00): was refused as binary
    "我们今天去公园散步，天气很好。\n孩子们在草地上玩耍 2026 年。\n" * 3,
    "오늘은 날씨가 좋아서 공원에 산책을 갔습니다.\n" * 3,
    "吾輩は猫である。名前はまだ無い。\r\n" * 3,
]


@pytest.mark.parametrize("text", NO_MARK_TEXTS)
@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_text_without_a_byte_order_mark_is_read_and_reported(writing, tmp_path, encoding,
                                                                   text):
    result = writing.add_file(write(tmp_path / "diary.txt", text.encode(encoding)))
    assert (result.status, result.reason) == (
        "added", f"no byte order mark: read as {encoding.upper()}")
    assert writing.get(result.document_ids[0]).text == text


def test_text_with_a_stray_nul_byte_is_not_taken_for_utf16(writing, tmp_path):
    """Read as UTF-16, its pairs of letters would be Chinese characters."""
    path = write(tmp_path / "notes.txt", b"Plain words and more words. " * 40 + b"\x00x")
    with pytest.raises(BinaryFile, match="binary file, not text"):
        writing.add_file(path)


def test_binary_data_after_a_text_start_is_refused(writing, tmp_path):
    path = write(tmp_path / "half.txt", b"Plain words. " * 1000 + b"PK\x03\x04\x00\x00" + bytes(256))
    with pytest.raises(BinaryFile, match="binary file, not text"):
        writing.add_file(path)
    assert writing.stats().documents == 0


def as_nobody(work):
    """`work()`'s result, computed in a forked child that dropped root for user nobody."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            outcome = work()
        except BaseException as error:  # noqa: BLE001 - everything must reach the parent
            outcome = ("unexpected", repr(error))
        os.write(write_end, pickle.dumps(outcome))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        outcome = pickle.loads(pipe.read())
    os.waitpid(child, 0)
    return outcome


def why_unreadable(path):
    try:
        read_file(path)
    except IngestError as error:
        return type(error).__name__, error.reason
    return None


def test_files_and_folders_without_read_permission_are_reported():
    """chmod 000 does not stop root, so the reads run in a child that is not root."""
    folder = Path(tempfile.mkdtemp(prefix="oppu-permissions-"))
    try:
        folder.chmod(0o711)  # others may enter, not list
        locked = write(folder / "locked.txt", "nobody may read this")
        locked.chmod(0o000)
        closed = folder / "closed"
        closed.mkdir(mode=0o700)
        hidden = write(closed / "inside.txt", "nor this")
        listed = folder / "listed"
        listed.mkdir()
        listed.chmod(0o755)  # mkdir's mode goes through the app's umask 077
        closed_below = listed / "closed below"
        closed_below.mkdir(mode=0o700)
        write(listed / "open.txt", "anyone may read this")

        def outcomes():
            problem = folder_problem(closed)
            return ([why_unreadable(locked), why_unreadable(hidden)], walk([listed, closed]),
                    (type(problem).__name__, problem.reason))

        assert as_nobody(outcomes) == (
            [("UnreadablePath", "permission denied"),
             ("UnreadablePath", "cannot read: permission denied")],
            [listed / "open.txt", closed_below, closed],
            ("UnreadablePath", "cannot open this folder: permission denied"),
        )
    finally:
        shutil.rmtree(folder)


def test_one_bad_file_does_not_stop_a_folder(writing, tmp_path):
    folder = tmp_path / "mixed"
    write(folder / "a.txt", "good text one")
    write(folder / "b.txt", b"\x00\x01\x02\x03")
    write(folder / "c.txt", "good text two")
    assert [r.status for r in writing.add_paths([folder])] == ["added", "skipped", "added"]


def test_empty_text_is_refused_and_unknown_source_too(writing):
    for blank in ("   \n ", "\u200b\ufeff \u2060"):
        with pytest.raises(EmptyInput):
            writing.add_note(blank)
    with pytest.raises(ValueError, match="unknown source"):
        writing.add_text("telepathy", "words")
    assert writing.stats().documents == 0


def test_a_file_name_with_a_newline_is_reported_on_one_line(writing, tmp_path):
    [result] = writing.add_paths([write(tmp_path / "two\nlines.txt", "Words of mine, twice over.")])
    assert result.status == "added" and result.line().count("\n") == 0
    assert "two\\nlines.txt" in result.line()


def test_names_that_would_steer_a_terminal_are_shown_escaped(writing, tmp_path):
    """A C1 control (\\x9b is an escape to a terminal) and a right-to-left override (which
    shows "rtl\u202etxt.md" as "rtldm.txt") are shown as escapes."""
    for name in ("c1\x9b2Jname.txt", "rtl\u202etxt.md"):
        [result] = writing.add_paths([write(tmp_path / name, f"Some words of mine in {name}.")])
        shown = result.line()
        assert result.status == "added" and "\x9b" not in shown and "\u202e" not in shown
    assert "c1\\x9b2Jname.txt" in writing.add_paths([tmp_path / "c1\x9b2Jname.txt"])[0].line()
    hebrew = "\u05e9\u05dc\u05d5\u05dd\u200f \u202bquoted\u202c"  # right-to-left writing
    assert printable(hebrew) == hebrew  # its own text keeps its marks and embeddings
    assert printable("a\u2028b\u061c", name=True) == "a\\u2028b\\u061c"
    assert printable(hebrew, name=True) == "\u05e9\u05dc\u05d5\u05dd\u200f \\u202bquoted\\u202c"


def test_a_file_name_that_is_not_utf8_is_read_and_named(writing, tmp_path):
    """An old disk's Latin-1 "café.txt": SQLite refused the name, and the import stopped."""
    folder = tmp_path / "old disk"
    write(folder / "a.txt", "The first note.")
    latin1 = Path(os.fsdecode(bytes(folder) + b"/caf\xe9.txt"))
    write(latin1, "Coffee by the harbour, every morning.")
    write(folder / "z.txt", "The last note.")
    results = writing.add_paths([folder])
    assert [r.status for r in results] == ["added", "added", "added"]
    assert results[1].path.endswith("café.txt") and results[1].line().encode("utf-8")
    assert sorted(d.title for d in writing.documents()) == ["a", "café", "z"]
