"""Settings: typed defaults with help text, validated, saved in SQLite and read back."""

import pytest

from oppu.core.profile import Profile
from oppu.core.settings import Settings
from oppu.storage.models import Setting


def test_every_setting_has_help_text():
    helps = Settings.help()
    assert helps and all(text.strip() for text in helps.values())


def test_settings_survive_closing_the_profile(oppu_home, embedder):
    with Profile("tester", embedder=embedder) as profile:
        profile.set("mail_addresses", "me@example.com, Me@Work.example")
        profile.set("retrieval_k", "6")
        profile.set("max_file_mb", 1.5)
        profile.set("auto_retrain", "off")
        changed = profile.settings
    with Profile("tester", embedder=embedder) as reopened:
        assert reopened.settings == changed
        assert reopened.settings.mail_addresses == ("me@example.com", "Me@Work.example")
        assert (reopened.settings.retrieval_k, reopened.settings.max_file_mb,
                reopened.settings.auto_retrain) == (6, 1.5, False)
        # The writing limits follow the settings.
        assert reopened.writing.max_file_bytes == int(1.5 * 2**20)
        assert reopened.writing.mail_addresses == {"me@example.com", "me@work.example"}


def test_a_changed_limit_reaches_the_open_writing_without_reopening_it(profile):
    """Rebuilding the writing re-ran its reconcile (every vector id read, missing chunks
    embedded), in the app on the GUI thread, for any change of any setting."""
    writing = profile.writing
    profile.set("adapter_scale", 0.5)
    profile.set("max_file_mb", 2)
    profile.set("mail_addresses", "Me@Example.com")
    assert profile.writing is writing
    assert writing.max_file_bytes == 2 * 2**20
    assert writing.mail_addresses == {"me@example.com"}


def test_a_change_from_another_process_is_seen_and_kept(profile, embedder):
    """`oppu config temperature 1.3` beside the open app: the app kept using 0.7, and its
    next change of any setting wrote every setting back, undoing the 1.3."""
    with Profile(profile.name, embedder=embedder) as terminal:
        terminal.set("temperature", 1.3)
    assert profile.settings.temperature == 1.3  # the next message uses it
    profile.set("adapter_scale", 0.5)
    with Profile(profile.name, embedder=embedder) as reopened:
        assert (reopened.settings.temperature, reopened.settings.adapter_scale) == (1.3, 0.5)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("no_such_setting", "1", "unknown setting 'no_such_setting'"),
    ("retrieval_k", "many", "retrieval_k must be a whole number, not 'many'"),
    ("retrieval_k", 2.5, "retrieval_k must be a whole number, not 2.5"),
    ("retrieval_k", "2.5", "retrieval_k must be a whole number, not '2.5'"),
    ("retrieval_k", "99999999999999999999",  # a whole number, too large (not "no number")
     "retrieval_k must be between 0 and 20, not '99999999999999999999'"),
    ("temperature", "warm", "temperature must be a number"),
    ("mail_addresses", "me@example.com, not an email, @@",
     "not an email address: 'not an email', '@@'"),
    ("auto_retrain", "perhaps", "auto_retrain must be true or false"),
    ("retrieval_k", "-1", "retrieval_k must be between 0 and 20, not '-1'"),
    ("temperature", "nan", "temperature must be between 0.0 and 2.0"),
    ("adapter_scale", 5, "adapter_scale must be between 0.0 and 2.0"),
    ("context_tokens", "16", "context_tokens must be between 256 and 131072"),
    ("max_file_mb", "0", "max_file_mb must be between 0.1 and 4096"),
    ("training_preset", "fastest", "training_preset must be quick, balanced or thorough"),
    ("training_device", "tpu", "training_device must be auto, cpu or cuda"),
])
def test_invalid_values_are_refused_with_a_reason(key, value, message):
    with pytest.raises(ValueError, match=message):
        Settings().with_value(key, value)


def test_a_stored_list_keeps_the_entries_this_version_still_accepts(profile):
    with profile.store.write() as session:
        session.merge(Setting(key="mail_addresses", value=["me@x.com", "Me <me@y.com>"]))
    with Profile("tester") as reopened:
        assert reopened.settings.mail_addresses == ("me@x.com",)


def test_a_stored_value_this_version_cannot_read_falls_back_to_the_default(profile):
    with profile.store.write() as session:
        session.merge(Setting(key="retrieval_k", value="lots"))
        session.merge(Setting(key="temperature", value=99.0))
        session.merge(Setting(key="from_a_newer_version", value=3))
    with Profile("tester") as reopened:
        assert reopened.settings.retrieval_k == Settings().retrieval_k
        assert reopened.settings.temperature == Settings().temperature


