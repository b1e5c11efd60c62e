"""Reading the user's own sent mail out of .eml and .mbox files."""

import email
import email.policy
import mailbox
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

from oppu.storage.errors import BrokenMailbox

# "On Tue, 3 Jan 2023, Ann wrote:" and its localized cousins, up to the quoted block.
REPLY_HEADER = re.compile(r"^(On .{0,200}wrote:|-----\s*Original Message\s*-----|From: .+)$",
                          re.IGNORECASE | re.MULTILINE)
SIGNATURE = re.compile(r"^(-- ?|__+|Sent from my .+)$", re.MULTILINE)


@dataclass(frozen=True)
class MailText:
    title: str
    text: str
    message_id: str


def _body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        html = message.get_body(preferencelist=("html",))
        if html is None:
            return ""
        return re.sub(r"<[^>]+>", " ", html.get_content())
    try:
        return part.get_content()
    except (LookupError, UnicodeError):
        return part.get_payload(decode=True).decode("utf-8", errors="replace")


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
    senders = {addr.lower() for _, addr in getaddresses(message.get_all("From", []))}
    return bool(senders & addresses)


def _to_text(message: EmailMessage) -> MailText:
    return MailText(
        title=str(message.get("Subject", "") or "(no subject)").strip(),
        text=own_words(_body_text(message)),
        message_id=str(message.get("Message-ID", "") or ""),
    )


def read_eml(path: Path, addresses: set[str]) -> list[MailText]:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    if not message.keys():
        raise BrokenMailbox(path, "not an email message (no headers)")
    return [_to_text(message)] if sent_by(message, addresses) else []


def read_mbox(path: Path, addresses: set[str]) -> list[MailText]:
    with path.open("rb") as handle:
        if not handle.read(5) == b"From ":
            raise BrokenMailbox(path, "not an mbox file (it must start with a 'From ' line)")
    box = mailbox.mbox(path, factory=lambda f: email.message_from_binary_file(
        f, policy=email.policy.default), create=False)
    texts = []
    try:
        for message in box:
            if message is None or not message.keys():
                continue
            if sent_by(message, addresses):
                texts.append(_to_text(message))
    except (ValueError, IndexError, email.errors.MessageError) as error:
        raise BrokenMailbox(path, f"broken mbox: {error}") from error
    finally:
        box.close()
    return texts
