"""Reading the user's own sent mail out of .eml and .mbox files."""

import email
import email.errors
import email.policy
import mailbox
import re
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

from oppu.storage.encoding import decode
from oppu.storage.errors import BrokenFile
from oppu.storage.html_text import html_text

# "On Tue, 3 Jan 2023, Ann wrote:" (mail clients may wrap it onto a second line), Outlook's
# "-----Original Message-----", Apple Mail's "Begin forwarded message:", or a forwarded
# message's headers ("From:" and then "Sent:", "Date:", ...): the quoted rest. A line of
# one's own that starts "From: " is not one.
REPLY_HEADER = re.compile(
    r"^(On\b[^\n]{0,200}(\n[^\n]{0,100})?wrote:[ \t]*"
    r"|-{2,}\s*(Original|Forwarded) Message\s*-{2,}|Begin forwarded message:"
    r"|From: [^\n]+(?=\n(Sent|Date|To|Cc|Subject): ))$",
    re.IGNORECASE | re.MULTILINE)
ESCAPED_FROM = re.compile(r"^>(>*)From ", re.MULTILINE)
SIGNATURE = re.compile(r"^(-- ?|__+|Sent from my .+)$", re.MULTILINE)
PARSE_ERRORS = (ValueError, LookupError, email.errors.MessageError)
# Damage that leaves noise. A missing padding is repaired by the parser and is not listed.
BASE64_DEFECTS = (email.errors.InvalidBase64CharactersDefect,
                  email.errors.InvalidBase64LengthDefect)
BROKEN_BODY = "with a damaged body (broken base64 encoding)"
CUT_OFF = "cut off where the file ends"
UNREADABLE = "that the email parser could not read"


@dataclass(frozen=True)
class MailText:
    title: str
    text: str
    message_id: str
    damaged: str = ""  # why it is left out: BROKEN_BODY, CUT_OFF, UNREADABLE; "" when whole


@contextmanager
def _broken_mail_is_reported(path: Path, what: str):
    try:
        yield
    except PARSE_ERRORS as error:
        raise BrokenFile(path, f"broken {what}: {error}") from error


def _part_text(part) -> str | None:
    """The part's text; None when it was damaged in transit (its bytes are noise)."""
    try:
        text = part.get_content()
    except (LookupError, UnicodeError):  # an unknown charset
        text = None
    declared = part.get_content_charset()
    if text is None or ("\ufffd" in text and declared in (None, "utf-8", "us-ascii")):
        # or one its bytes do not fit (Windows-1252 sent as UTF-8); a legacy charset that
        # lacks one character keeps the rest
        text = decode(part.get_payload(decode=True) or b"", declared)[0]
    if any(isinstance(d, BASE64_DEFECTS) for d in part.defects):  # found while decoding
        return None
    return text.replace("\x00", "")


def _body_text(message: EmailMessage) -> str | None:
    part = message.get_body(preferencelist=("plain",))
    if part is not None:
        text = _part_text(part)
        if text is None or text.strip():  # an empty one may have its HTML twin filled
            return text
    html = message.get_body(preferencelist=("html",))
    if html is None:
        return ""
    text = _part_text(html)
    return None if text is None else html_text(text)


def own_words(body: str) -> str:
    """The body without quoted replies, forwarded history or a signature."""
    cut = REPLY_HEADER.search(body)
    if cut:
        body = body[: cut.start()]
    signature = SIGNATURE.search(body)
    if signature:
        body = body[: signature.start()]
    lines = [line for line in body.splitlines() if not line.lstrip().startswith(">")]
    return "\n".join(lines).strip()


def sent_by(message: EmailMessage, addresses: set[str]) -> bool:
    """Read from the raw From headers: the modern header parser raises on some malformed
    addresses (AttributeError, TypeError, … on `win@[prize`), common in spam."""
    raw = [str(value) for name, value in message.raw_items() if name.lower() == "from"]
    # One header at a time: given a malformed one with a good one, getaddresses makes a
    # single bogus address of both.
    return bool({addr.lower() for value in raw for _, addr in getaddresses([value])}
                & addresses)


def _cut_off(message: EmailMessage) -> bool:
    """A multipart message whose closing boundary never comes: the file ends inside it."""
    return any(isinstance(d, email.errors.CloseBoundaryNotFoundDefect)
               for part in message.walk() for d in part.defects)


def _to_text(message: EmailMessage, unescape=lambda body: body, cut_off=False) -> MailText:
    cut_off = cut_off or _cut_off(message)
    body = None if cut_off else _body_text(message)
    return MailText(
        title=" ".join(str(message.get("Subject", "") or "(no subject)").split()),
        text="" if body is None else own_words(unescape(body)),
        message_id=str(message.get("Message-ID", "") or "").strip(),
        damaged=CUT_OFF if cut_off else BROKEN_BODY if body is None else "",
    )


def why_nothing_imported(messages: list[MailText]) -> str:
    """Why mail sent by the user (`messages`, none with text) gives nothing to store."""
    if not messages:
        return "no mail sent by you (from your email addresses) in this file"
    if all(m.damaged for m in messages):
        return f"skipped: {_reasons(messages)}; nothing to import"
    empty = ("your mail holds no text of your own (no message body, or only quoted replies, "
             "a signature or attachments)")
    return f"{empty}; skipped: {_reasons(messages)}" if any(m.damaged for m in messages) \
        else empty


def damaged_note(messages: list[MailText]) -> list[str]:
    return [f"skipped: {_reasons(messages)}"] if any(m.damaged for m in messages) else []


def _reasons(messages: list[MailText]) -> str:
    """'2 messages with a damaged body (...), 1 message cut off where the file ends'."""
    counts = {reason: sum(m.damaged == reason for m in messages)
              for reason in (BROKEN_BODY, CUT_OFF, UNREADABLE)}
    return ", ".join(f"{count} message{'s' * (count > 1)} {reason}"
                     for reason, count in counts.items() if count)


def _mbox_unescaped(body: str) -> str:
    """An mbox writes a body line starting "From " as ">From "; that line is the user's
    own, not a quote, so the escape comes off before quotes are cut."""
    return ESCAPED_FROM.sub(r"\1From ", body)


def _parse(handle) -> EmailMessage:
    return email.message_from_binary_file(handle, policy=email.policy.default)


def _own_text(message: EmailMessage, addresses: set[str], **how) -> list[MailText]:
    """The message's text if the user sent it. One the email package cannot read (it
    raises all sorts on malformed headers) is reported as such, and the rest still count."""
    try:
        return [_to_text(message, **how)] if sent_by(message, addresses) else []
    except Exception:  # noqa: BLE001 - see above
        return [MailText("", "", "", UNREADABLE)]


def read_eml(path: Path, addresses: set[str]) -> list[MailText]:
    with _broken_mail_is_reported(path, "email"), path.open("rb") as handle:
        message = _parse(handle)
        if not message.keys():
            raise BrokenFile(path, "not an email message (no headers)")
        return _own_text(message, addresses)


def read_mbox(path: Path, addresses: set[str]) -> list[MailText]:
    with path.open("rb") as handle:
        if not handle.read(5) == b"From ":
            raise BrokenFile(path, "not an mbox file (it must start with a 'From ' line)")
        handle.seek(-1, 2)
        # Every message in an mbox ends with a line break (a blank line before the next
        # "From "): a file that ends without one was cut, inside its last message.
        ends_cut = handle.read(1) != b"\n"
    box = mailbox.mbox(path, factory=_parse, create=False)
    texts = []
    try:
        with _broken_mail_is_reported(path, "mbox"):
            keys = box.keys()
        for key in keys:
            try:
                message = box[key]
            except Exception:  # noqa: BLE001 - one message the parser chokes on
                texts.append(MailText("", "", "", UNREADABLE))
                continue
            if message.keys():
                texts += _own_text(message, addresses, unescape=_mbox_unescaped,
                                   cut_off=ends_cut and key == keys[-1])
    finally:
        box.close()
    return texts
