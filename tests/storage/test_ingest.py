"""Every way the user's writing gets in, on a real SQLite file and Chroma folder."""

from pathlib import Path

import pytest

from oppu.storage.chunking import MAX_WORDS, word_count
from oppu.storage.headings import plain_heading
from tests.storage.conftest import assert_consistent, chunk_ids, write

GARDEN = ("My tomatoes split again after the storm. Next year I will water them less and "
          "mulch the beds with straw before July.")
UNSUPPORTED_JPG = "unsupported file type '.jpg': use .txt, .md, .docx, .odt, .html, .eml or .mbox"
BIKE = "The chain on my old bicycle keeps slipping on the third gear when I climb the hill."


def test_a_note_is_stored_chunked_and_findable(writing):
    document_id = writing.add_note(GARDEN)
    document = writing.get(document_id)
    assert (document.source, document.text, document.words) == ("note", GARDEN, len(GARDEN.split()))
    assert document.title.startswith("My tomatoes split again")
    assert [c.text for c in document.chunks] == [GARDEN]
    writing.add_note(BIKE)
    best = writing.search("watering tomato plants", k=2, min_score=-1.0)
    assert best[0].document_id == document_id
    assert best[0].title == document.title and best[0].score > best[1].score
    assert_consistent(writing)


def test_a_passage_several_documents_share_is_found_once(writing):
    shared = " ".join([GARDEN] * 6)  # a passage of its own: about 130 words
    writing.add_text("file", f"{shared}\n\n{' '.join([BIKE] * 8)}", "one")
    writing.add_text("file", f"{shared}\n\n{' '.join(['The kettle whistles at dawn.'] * 25)}", "two")
    found = writing.search("tomatoes after the storm", k=2, min_score=-1.0)
    assert found[0].text == shared
    assert len({p.text for p in found}) == len(found) == 2


def test_chat_messages_are_the_users_writing_too(writing):
    document_id = writing.add_chat_message("Could you remind me to call the plumber tomorrow?")
    assert writing.get(document_id).source == "chat"
    assert [d.id for d in writing.documents(source="chat")] == [document_id]
    assert writing.stats().documents == 1


def test_long_text_becomes_several_passages_each_indexed(writing):
    paragraphs = [f"Paragraph {i} talks about topic {i} at some length. " * 12 for i in range(6)]
    document_id, _ = writing.add_text("note", "\n\n".join(paragraphs), "long one")
    chunks = writing.get(document_id).chunks
    assert len(chunks) > 1
    assert all(len(c.text.split()) <= MAX_WORDS for c in chunks)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert chunk_ids(writing, document_id) <= writing.index.ids()


def test_text_with_few_spaces_is_cut_into_passages_of_bounded_length():
    from oppu.storage.chunking import MAX_CHARS, split_passages

    long_word = "a" * (5 * MAX_CHARS + 7)  # base64 or minified code: one "word"
    urls = " ".join(f"https://example.com/{'x' * 200}/{i}" for i in range(40))
    for text in (long_word, urls, f"Intro.\n\n{long_word}\n\nOutro."):
        passages = split_passages(text)
        assert all(len(p) <= MAX_CHARS for p in passages)
        assert "".join(p.replace("\n\n", "").replace(" ", "") for p in passages) == \
            text.replace("\n\n", "").replace(" ", "")  # nothing lost, nothing added


def test_a_cut_for_length_keeps_words_accents_and_emoji_whole():
    from oppu.storage.chunking import MAX_CHARS, split_passages

    spaced = " ".join(["https://example.com/" + "x" * 60] * 100)  # 81 characters a word
    assert all(p.endswith("x") and p.startswith("https") for p in split_passages(spaced))
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    for at in range(MAX_CHARS - 5, MAX_CHARS + 1):  # the sequence across the limit
        for whole in (family, "\U0001f44d\U0001f3fd", "e\u0301", "1\ufe0f\u20e3",  # keycap
                      "\U0001f1eb\U0001f1f7", "\u1112\u1161\u11ab"):  # a flag, jamo 한
            passages = split_passages("a" * at + whole + "b" * 50)
            assert any(whole in p for p in passages), (at, whole)
            assert all(len(p) <= MAX_CHARS for p in passages)


def test_chinese_and_japanese_count_a_word_per_character_and_are_cut_into_passages(writing):
    assert word_count("今日はいい天気です。") == 9
    assert word_count("我喜欢Python编程，真的！") == 8
    text = "我每天早上在河边散步，看鸟和船。" * 30  # 14 characters a sentence, no spaces
    document_id, _ = writing.add_text("note", text, "散步")
    document = writing.get(document_id)
    assert document.words == 14 * 30
    assert len(document.chunks) > 1
    assert all(word_count(c.text) <= MAX_WORDS for c in document.chunks)
    assert "".join(c.text.replace("\n\n", "") for c in document.chunks) == text  # no spaces put in
    assert writing.search("河边散步", k=1)[0].document_id == document_id


def test_a_file_changed_and_added_again_says_its_earlier_version_is_stored(writing, tmp_path,
                                                                          monkeypatch):
    path = write(tmp_path / "essay.txt", GARDEN)
    first = writing.add_file(path).document_ids[0]
    write(path, GARDEN.replace("storm", "heatwave"))
    monkeypatch.chdir(tmp_path)
    again = writing.add_file(Path("essay.txt"))  # the same file, named relatively this time
    assert again.status == "added"
    assert again.reason == (f"an earlier version of this file is stored too: document {first};"
                            " forget it to keep only this one")
    assert len(writing.documents()) == 2  # nothing is forgotten without being asked
    write(path, GARDEN.replace("storm", "drought"))
    third = writing.add_file(path)
    assert third.reason == (f"an earlier version of this file is stored too: documents {first} "
                            f"and {again.document_ids[0]}; forget them to keep only this one")
    assert writing.add_file(write(tmp_path / "other" / "essay.txt", BIKE)).reason == ""


def test_files_are_titled_by_their_name_or_a_markdown_files_opening_heading(writing, tmp_path):
    hashed = "# Not a heading here\n" + GARDEN
    txt = writing.add_file(write(tmp_path / "holiday plans.txt", hashed))
    md = writing.add_file(write(tmp_path / "bike.md", "\n## Fixing the bike ##\n\n" + BIKE))
    plain_md = writing.add_file(write(tmp_path / "walks.markdown", "#walks " + GARDEN[::-1]))
    assert (txt.status, md.status, plain_md.status) == ("added", "added", "added")
    assert txt.words == len(hashed.split())
    assert writing.get(txt.document_ids[0]).title == "holiday plans"
    assert writing.get(md.document_ids[0]).title == "Fixing the bike"
    assert writing.get(plain_md.document_ids[0]).title == "walks"  # "#walks" is no heading
    assert writing.get(md.document_ids[0]).source == "file"
    assert writing.get(md.document_ids[0]).origin == str(tmp_path / "bike.md")
    assert [writing.get(f.document_ids[0]).is_markdown for f in (txt, md, plain_md)] == [
        False, True, True]


def test_a_heading_title_reads_as_plain_text_not_markdown(writing, tmp_path):
    def title(name: str, heading: str) -> str:
        result = writing.add_file(write(tmp_path / name, f"{heading}\n\n{BIKE} {name}"))
        return writing.get(result.document_ids[0]).title

    assert title("idea.md", "# **Bold** idea with `code` and [a link](http://x)") == (
        "Bold idea with code and a link")
    assert title("names.md", "## Why __init__ and _my_ snake_case_name? ##") == (
        "Why init and my snake_case_name?")
    assert title("photo.md", "# ![](photo.png)") == "photo"  # nothing left: the file's name
    assert title("hashes.markdown", "### ###") == "hashes"
    assert title("indented.md", "   ## Three spaces may lead") == "Three spaces may lead"
    assert title("code.md", "    # four make a code block") == "code"


@pytest.mark.parametrize(("heading", "plain"), [
    ("*em* _em_ **strong** __strong__ ***both*** ~~struck~~", "em em strong strong both struck"),
    ("**a *nested* one** and *two* **parts**", "a nested one and two parts"),
    ("snake_case_name and file_name.md stay", "snake_case_name and file_name.md stay"),
    ("`x * y` and ``a `tick` b`` and `` `edge` ``", "x * y and a `tick` b and `edge`"),
    ("`**code is literal**`", "**code is literal**"),
    ("[a [b] link](http://x/(y) \"title\") and ![alt](i.png)", "a [b] link and alt"),
    ("[![badge](b.svg)](http://ci) [**bold**](u)", "badge bold"),
    ("<https://x.org/a_b*c*> and <me@x.org>", "https://x.org/a_b*c* and me@x.org"),
    ("\\*not em\\* \\_nor\\_ \\`code\\` \\[x](y) \\\\", "*not em* _nor_ `code` [x](y) \\"),
    ("Closing hashes ###", "Closing hashes"),
    ("C# and #tags stay, so does \\#", "C# and #tags stay, so does #"),
    ("5 * 3 * 2, [draft], a lone ` and **", "5 * 3 * 2, [draft], a lone ` and **"),
    ("##", ""),
    ("Fish &amp; Chips <em>now</em> [ref][1] and [this][]", "Fish & Chips now ref and this"),
    ("`&amp; <b>` in code stays", "&amp; <b> in code stays"),
])
def test_plain_heading_strips_inline_markdown(heading, plain):
    assert plain_heading(heading) == plain


@pytest.mark.timeout(10)
def test_a_heading_on_one_very_long_line_is_read_only_as_far_as_a_title_needs():
    assert plain_heading("*a " * 200_000).startswith("*a *a")  # no emphasis: never closed


def test_folders_are_walked_recursively_with_a_report_per_file(writing, tmp_path):
    root = tmp_path / "notes"
    write(root / "a.txt", GARDEN)
    write(root / "deeper" / "b.md", BIKE)
    write(root / "deeper" / "again" / "c.txt", "  " + GARDEN.replace(" ", "  ") + "\n")
    write(root / "deeper" / "photo.jpg", b"\xff\xd8\xff\xe0 not text")
    write(root / ".hidden" / "secret.txt", "hidden folders are skipped")
    write(root / ".also-hidden.txt", "hidden files are skipped")
    reports = []
    results = writing.add_paths([root], lambda done, total, r: reports.append((done, total, r)))
    lines = {r.path.removeprefix(str(root) + "/"): (r.status, r.reason) for r in results}
    assert lines == {
        "a.txt": ("added", ""),
        "deeper/b.md": ("added", ""),
        "deeper/again/c.txt": ("duplicate", "its text is already stored"),
        "deeper/photo.jpg": ("skipped", UNSUPPORTED_JPG),
    }
    assert [(done, total) for done, total, _ in reports] == [(i, 4) for i in range(1, 5)]
    assert [r for *_, r in reports] == results
    assert results[0].line() == f"added     {root / 'a.txt'}"
    assert writing.stats().documents == 2
    assert_consistent(writing)


def test_linked_folders_are_followed_once_and_the_data_folder_never(writing, tmp_path,
                                                                   oppu_home):
    from oppu.storage.readers import walk

    root = tmp_path / "notes"
    write(root / "a.txt", GARDEN)
    write(tmp_path / "elsewhere" / "b.txt", BIKE)
    (root / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)  # a link back up
    (root / "up").symlink_to(tmp_path, target_is_directory=True)  # above: siblings, or /
    (root / "data").symlink_to(oppu_home, target_is_directory=True)
    write(oppu_home / "profiles" / "x" / "log.txt", "the app's own files are not writing")

    assert walk([root]) == [root / "a.txt", root / "linked" / "b.txt"]
    assert walk([tmp_path / "notes" / "linked"]) == [root / "linked" / "b.txt"]
    [result] = writing.add_paths([oppu_home])
    assert (result.status, result.reason) == ("skipped",
                                              "this is OPPU's own data folder, not your writing")


def test_a_large_file_reports_its_passages_as_they_are_embedded(writing, tmp_path,
                                                                monkeypatch):
    monkeypatch.setattr("oppu.storage.writing.EMBED_SLICE", 2)
    paragraphs = [f"Paragraph {i} of the long diary. " + GARDEN for i in range(5)]
    path = write(tmp_path / "diary.txt", "\n\n".join(paragraphs) * 8)
    embedded = []
    [result] = writing.add_paths([path], embedding=lambda done, total: embedded.append(
        (done, total)))
    passages = len(writing.get(result.document_ids[0]).chunks)
    assert passages > 2 and result.status == "added"
    assert embedded == [(min(done, passages), passages) for done in range(2, passages + 2, 2)]
    assert_consistent(writing)


def test_add_paths_stops_between_files_when_asked(writing, tmp_path, monkeypatch):
    monkeypatch.setattr("oppu.storage.writing.EMBED_GROUP", 1)  # store each file when read
    files = [write(tmp_path / f"{i}.txt", f"Distinct text number {i}.") for i in range(4)]
    seen = []
    results = writing.add_paths(files, lambda *a: seen.append(a),
                                should_stop=lambda: len(seen) == 2)
    assert [r.path for r in results] == [str(f) for f in files[:2]]
    assert writing.stats().documents == 2
    assert writing.add_paths(files, should_stop=lambda: True) == []
    assert_consistent(writing)


def test_add_paths_stops_inside_a_large_file_which_is_then_not_stored(writing, tmp_path,
                                                                      monkeypatch):
    """Its embedding takes minutes: Ctrl-C was heard only after all of it, and the file was
    stored anyway."""
    monkeypatch.setattr("oppu.storage.writing.EMBED_SLICE", 2)
    small = write(tmp_path / "a.txt", "A short note first.")
    large = write(tmp_path / "b.txt", " ".join(f"Line {i} of the long one." for i in range(1500)))
    embedded = []
    results = writing.add_paths([small, large], embedding=lambda done, total: embedded.append(done),
                                should_stop=lambda: len(embedded) >= 2)
    assert results == [] and len(embedded) == 2  # both were embedding together: neither stored
    assert writing.stats().documents == 0 and writing.index.count() == 0
    assert_consistent(writing)


def test_add_paths_embeds_across_files_yet_stores_each_file_alone(writing, tmp_path, monkeypatch):
    monkeypatch.setattr("oppu.storage.writing.EMBED_GROUP", 3)
    files = [write(tmp_path / f"{i:02}.txt", f"Entry {i}: the weather was odd today, {i} times.")
             for i in range(7)]
    calls = []
    embed = writing.index.embedder.embed
    monkeypatch.setattr(writing.index.embedder, "embed", lambda texts: calls.append(len(texts))
                        or embed(texts))
    results = writing.add_paths(files)
    assert [r.status for r in results] == ["added"] * 7
    assert calls == [3, 3, 1]
    assert sorted(i for r in results for i in r.document_ids) == list(
        range(results[0].document_ids[0], results[0].document_ids[0] + 7))
    assert_consistent(writing)


def test_same_text_twice_is_stored_once(writing, tmp_path):
    first, new = writing.add_text("note", GARDEN, "garden")
    assert new
    assert writing.add_text("note", GARDEN, "garden") == (first, False)
    assert writing.add_text("chat", "\n " + GARDEN.replace(". ", ".\n\n  ") + "  \t") == (
        first, False)
    result = writing.add_file(write(tmp_path / "copy.txt", GARDEN))
    assert (result.status, result.document_ids, result.words) == ("duplicate", [first], 0)
    assert writing.stats().documents == 1
    assert_consistent(writing)


def test_search_can_look_only_at_earlier_documents(writing):
    early = writing.add_note(GARDEN)
    late = writing.add_note("Tomatoes again: the storm split every single tomato I had.")
    assert {p.document_id for p in writing.search("tomatoes", k=4)} == {early, late}
    assert [p.document_id for p in writing.search("tomatoes", k=4, before_document=late)] == [
        early]
    assert writing.search("tomatoes", before_document=early) == []
    assert writing.search("tomatoes", min_score=1.01) == []
    assert writing.search("   ") == []


def test_earlier_passages_are_found_even_when_later_ones_crowd_the_top(writing):
    bike = writing.add_note(BIKE)
    garden = writing.add_note(GARDEN)
    storm = writing.add_note("Tomatoes again: the storm split every single tomato I had.")
    query = "the storm split my tomatoes"
    assert writing.search(query, k=1)[0].document_id == storm

    def earlier(before):
        return [p.document_id for p in writing.search(query, 1, -1.0, before_document=before)]

    assert earlier(storm) == [garden]
    assert earlier(garden) == [bike]
    assert earlier(bike) == []


def test_listing_filters_by_text_and_source(writing):
    garden = writing.add_note(GARDEN)
    writing.add_chat_message(BIKE)
    assert [d.id for d in writing.documents("tomatoes")] == [garden]
    assert [d.id for d in writing.documents("TOMATOES split")] == [garden]
    assert writing.documents("100%") == writing.documents("my_") == []  # no wildcards
    assert writing.documents("a" * 50_001) == []  # LIKE refused it: "pattern too complex"
    assert [d.source for d in writing.documents()] == ["chat", "note"]
    assert writing.stats().words == len(GARDEN.split()) + len(BIKE.split())


def test_listing_filter_finds_a_file_by_its_name_but_not_by_its_folders(writing, tmp_path):
    notes = write(tmp_path / "kitchen" / "sourdough-notes.md", "# Feeding the starter\n" + BIKE)
    stored = writing.add_file(notes).document_ids[0]
    windows, _ = writing.add_text("file", GARDEN, "Tomatoes",
                                  origin="C:\\Users\\Baker\\Rye Loaf.markdown")
    note = writing.add_note("My kitchen notes: " + GARDEN[::-1])
    assert writing.get(stored).title == "Feeding the starter"  # the name is not in the title
    assert [d.id for d in writing.documents("sourdough-notes")] == [stored]
    assert [d.id for d in writing.documents("SOURDOUGH-Notes.MD")] == [stored]
    assert [d.id for d in writing.documents("rye loaf")] == [windows]  # a Windows path
    assert [d.id for d in writing.documents("kitchen")] == [note]  # a folder is no name
    assert writing.documents("baker") == writing.documents("users") == []
    assert writing.documents(str(notes)) == []  # the whole path is not the name either
    assert [d.id for d in writing.documents(".md")] == [stored]
    assert [d.id for d in writing.documents("notes")] == [note, stored]  # text, name
    assert [d.id for d in writing.documents("sourdough", source="file")] == [stored]
    assert writing.documents("sourdough", source="note") == []
    assert writing.documents("sourdough_notes") == []  # _ is no wildcard in a name either
