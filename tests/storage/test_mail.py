"""Reading mail (.eml, .mbox) and HTML as the user's writing: their own words only, as a
mail client or a browser shows them."""

import pytest

from oppu.storage.html_text import html_text
from tests.storage.conftest import ME, write

EML = """\
From: Me Myself <ME@example.com>
To: ann@example.com
Subject: Re: the  garden
Message-ID: <m1@example.com>
Content-Type: text/plain; charset=utf-8

I think we should plant the beans along the fence this year.

--
Me Myself, Allotment 12

On Tue, 3 Jan 2023, Ann <ann@example.com> wrote:
> Where do the beans go?
"""


def test_eml_keeps_my_words_without_quote_or_signature(mail_writing, tmp_path):
    result = mail_writing.add_file(write(tmp_path / "reply.eml", EML))
    assert result.status == "added"
    document = mail_writing.get(result.document_ids[0])
    assert (document.source, document.title) == ("mail", "Re: the garden")
    assert document.text == "I think we should plant the beans along the fence this year."
    assert document.origin.endswith("reply.eml#<m1@example.com>")


def message(sender: str, subject: str, body: str) -> str:
    return (f"From {sender} Sat Jan  6 10:00:00 2024\nFrom: {sender}\nTo: x@example.com\n"
            f"Subject: {subject}\n\n{body}\n\n")


def mail_from_me(headers: str, body: bytes) -> bytes:
    return f"From: {ME}\nSubject: Trip\n{headers}\n\n".encode() + body


def test_html_only_mail_keeps_the_visible_words(mail_writing, tmp_path):
    html = (b"<html><head><style>body{color:red}</style><script>var x=1;</script></head>"
            b"<body><p>The mountain &amp; the lake &lt;again&gt;, &eacute;t&eacute;</p>"
            b"<div>Next  summer too.</div></body></html>")
    path = write(tmp_path / "html.eml", mail_from_me("Content-Type: text/html; charset=utf-8", html))
    document = mail_writing.get(mail_writing.add_file(path).document_ids[0])
    assert document.text == "The mountain & the lake <again>, \xe9t\xe9\nNext summer too."
    assert html_text("<html><head><meta charset=utf-8><body><p>Hello</p>") == "Hello"  # no </head>
    assert html_text("<tr><td>Name</td><td>Value</td></tr>a<hr>b <b>c</b>d") == "Name\nValue\na\nb cd"


def test_the_end_of_a_page_is_read_as_browsers_read_it():
    """After the last ">", a "<" is text: Python's parser looked for each one's end to the
    end of the page (a 240 KB page cut short took hours). A comment left open hides the
    rest; its markup was stored as writing."""
    assert html_text("<p>Inequalities: " + "if x<y then z. " * 3000) == (
        "Inequalities: " + " ".join(["if x<y then z."] * 3000))
    assert html_text("<p>My page.</p><!-- old menu " + "<a href=x>link</a> " * 3000) == "My page."
    assert html_text("<p>a</p><!-- note --><p>b <!-- c --> d</p><!-- open") == "a\nb d"
    # not a comment left open: in a script, in an attribute; an empty one
    assert html_text('<script>var re = "<!--";</script><p>Seen.</p>') == "Seen."
    assert html_text('<img alt="<!--"><p>Seen.</p>') == "Seen."
    assert html_text("<p>Before</p><!--><p>After.</p><!---><p>End.</p>") == "Before\nAfter.\nEnd."


@pytest.mark.parametrize(("headers", "body", "stored"), [
    ("Content-Type: text/plain; charset=x-unknown",  # a wrong charset keeps its letters
     "Caf\xe9 cr\xe8me by the lake.".encode("cp1252"), "Caf\xe9 cr\xe8me by the lake."),
    ("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64",
     b"SGVsbG8gd29ybGQsIHRoaXMgaXMgbWU", "Hello world, this is me"),  # padding missing only
    ("Content-Type: text/plain; charset=utf-8",  # a charset its bytes do not fit: was U+FFFD
     "Caf\xe9 cr\xe8me br\xfbl\xe9e by the lake.".encode("cp1252"),
     "Caf\xe9 cr\xe8me br\xfbl\xe9e by the lake."),
    ("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64",
     b"QmxhY2sgZmlncwAgYXQgdGhlIG1hcmtldC4=", "Black figs at the market."),  # a NUL byte
    ("", b"I wrote this.\nFrom: the desk of the mayor, news.\nMore of mine.",  # not a header
     "I wrote this.\nFrom: the desk of the mayor, news.\nMore of mine."),
    ("", b"Mine.\n\nFrom: Bob <bob@example.com>\nSent: Monday\nSubject: Hi\n\nBob's words.",
     "Mine."),  # a forwarded message's headers
    ("Content-Type: multipart/alternative; boundary=b", (
        b"--b\nContent-Type: text/plain\n\n\n--b\nContent-Type: text/html\n\n"
        b"<p>Only the HTML twin has words.</p>\n--b--\n"),
     "Only the HTML twin has words."),
    ("Content-Type: text/plain; charset=gb2312",  # lacking one character keeps the rest
     "明天开会，请准时参加。镕".encode("gbk"), "明天开会，请准时参加。\ufffdF"),
    ("Content-Type: text/plain; charset=undefined",  # a codec that refuses everything
     "Caf\xe9 cr\xe8me by the lake.".encode("cp1252"), "Caf\xe9 cr\xe8me by the lake."),
], ids=["wrong-charset", "base64-without-padding", "charset-not-fitting", "nul-byte",
        "from-in-my-words", "forwarded-headers", "empty-plain-part", "legacy-charset-lacking-one",
        "undefined-charset"])
def test_mail_bodies_are_read_as_a_mail_client_shows_them(mail_writing, tmp_path, headers, body, stored):
    path = write(tmp_path / "odd.eml", mail_from_me(headers, body))
    document = mail_writing.get(mail_writing.add_file(path).document_ids[0])
    assert document.text == stored


def test_mail_with_a_damaged_base64_body_is_not_stored_as_noise(mail_writing, tmp_path):
    path = write(tmp_path / "damaged.eml", mail_from_me(
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64",
        b"!!!!not base64 at all ###"))
    [result] = mail_writing.add_paths([path])
    assert result.status == "skipped"
    assert "1 message with a damaged body (broken base64 encoding)" in result.reason
    assert mail_writing.stats().documents == 0


def test_an_mbox_names_the_damaged_messages_it_skipped(mail_writing, tmp_path):
    damaged = (f"From {ME} Sat Jan  6 10:00:00 2024\nFrom: {ME}\nSubject: Broken\n"
               "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
               "!!!!not base64 at all ###\n\n")
    mbox = write(tmp_path / "Sent.mbox", damaged + message(ME, "Fine", "The garden is in bloom."))
    [result] = mail_writing.add_paths([mbox])
    assert result.status == "added" and len(result.document_ids) == 1
    assert "skipped: 1 message with a damaged body" in result.reason


def test_an_mbox_cut_off_inside_its_last_message_keeps_the_whole_ones(mail_writing, tmp_path):
    whole = message(ME, "Fine", "The garden is in bloom.")
    cut = message(ME, "Cut", "The roses by the gate have finally opened and I think")
    mbox = write(tmp_path / "Sent.mbox", whole + cut.rstrip("\n"))
    [result] = mail_writing.add_paths([mbox])
    assert result.status == "added" and len(result.document_ids) == 1
    assert "skipped: 1 message cut off where the file ends" in result.reason
    assert mail_writing.get(result.document_ids[0]).text == "The garden is in bloom."


def test_a_multipart_mail_without_its_closing_boundary_is_cut_off(mail_writing, tmp_path):
    path = write(tmp_path / "cut.eml", mail_from_me(
        'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b1"',
        b"--b1\nContent-Type: text/plain\n\nThe roses by the gate have finally opened\n"))
    [result] = mail_writing.add_paths([path])
    assert result.status == "skipped"
    assert "1 message cut off where the file ends" in result.reason
    assert mail_writing.stats().documents == 0


@pytest.mark.parametrize("sender", ["win@[prize", "ame@[ ", ": ; , .>)",
                                    ":?;??@example.com.", "=?utf-8?q??=(me= "])
def test_spam_with_malformed_headers_leaves_the_rest_of_the_mbox(mail_writing, tmp_path, sender):
    """The email package raised AttributeError, TypeError, … on these From headers, which
    aborted the whole import; an mbox with one of them lost all the user's mail in it."""
    mbox = write(tmp_path / "All mail.mbox", message(ME, "Fine", "The garden is in bloom.")
                 + message(sender, "You won", "Claim your prize now.")
                 + message(ME, "Later", "The roses opened today."))
    note = write(tmp_path / "z-notes.txt", "Notes of mine, after the mailbox.")
    results = mail_writing.add_paths([mbox, note])
    assert [r.status for r in results] == ["added", "added"]
    assert len(results[0].document_ids) == 2
    assert sorted(d.title for d in mail_writing.documents()) == ["Fine", "Later", "z-notes"]


def test_my_mail_with_a_second_malformed_from_header_is_still_mine(mail_writing, tmp_path):
    mail = write(tmp_path / "two-senders.eml",
                 f"From: win@[prize\nFrom: Me <{ME}>\nSubject: Figs\n\nThe figs are ripe.\n")
    [result] = mail_writing.add_paths([mail])
    assert result.status == "added"
    assert [d.title for d in mail_writing.documents()] == ["Figs"]


def test_mail_with_only_quotes_says_so(mail_writing, tmp_path):
    path = write(tmp_path / "quote.eml", mail_from_me("", b"> only what Bob wrote\n"))
    [result] = mail_writing.add_paths([path])
    assert result.status == "skipped" and "no text of your own" in result.reason


def test_mbox_keeps_only_mail_i_sent(mail_writing, tmp_path):
    mbox = write(tmp_path / "Sent.mbox", "".join([
        message(ME, "Train times", "The 8:15 is cancelled, I'll take the 8:40.\n\n"
                "On Fri, Jan 5, 2024 at 9:00 AM Bob <bob@example.com>\nwrote:\n"
                "> When are you arriving?"),
        message("bob@example.com", "Not mine", "Bob's own words must not be imported."),
        message(ME, "Recipe", "Soak the lentils overnight.\n>From then on, simmer.\n"
                "> quoted line\n\n-- \nMe"),
    ]))
    result = mail_writing.add_file(mbox)
    assert result.status == "added" and len(result.document_ids) == 2
    stored = [mail_writing.get(i) for i in result.document_ids]
    assert [(d.title, d.text) for d in stored] == [
        ("Train times", "The 8:15 is cancelled, I'll take the 8:40."),
        ("Recipe", "Soak the lentils overnight.\nFrom then on, simmer."),  # mbox's >From
    ]
    assert "Bob" not in " ".join(d.preview for d in mail_writing.documents())


def test_listing_filter_finds_mail_by_its_file_name(mail_writing, tmp_path):
    box = write(tmp_path / "2019" / "Sent Items.mbox",
                message(ME, "Beans", "Plant the beans by the fence.")
                + f"From {ME} Sat Jan  6 10:00:00 2024\nFrom: {ME}\nMessage-ID: <k9@mail.host>\n"
                  "Subject: Figs\n\nThe figs are ripe.\n\n")
    ids = mail_writing.add_file(box).document_ids
    assert [mail_writing.get(i).origin.rsplit("#", 1)[1] for i in ids] == ["0", "<k9@mail.host>"]
    assert {d.id for d in mail_writing.documents("sent items")} == set(ids)
    assert {d.id for d in mail_writing.documents(".mbox")} == set(ids)
    assert mail_writing.documents("2019") == []  # a folder is no name
    assert mail_writing.documents("mail.host") == []  # nor is a message's id
