"""When a retrain is due: words since the last adapter, hours since the last run."""

from datetime import timedelta

from oppu.core.policy import retrain_due
from oppu.storage.models import Adapter, AdapterDocument, TrainingRun, utcnow
from tests.support.sample_writing import add_notes


def record_run(profile, status: str, hours_ago: float) -> None:
    with profile.store.write() as session:
        session.add(TrainingRun(status=status, started_at=utcnow() - timedelta(hours=hours_ago)))


def test_not_due_before_there_is_enough_writing_for_a_model(profile):
    profile.set("retrain_min_words", 100)
    add_notes(profile, count=2, words_each=100)
    words = profile.writing.stats().words
    assert retrain_due(profile) == (
        False, f"{words} words of writing so far; a model needs at least 1,000")


def test_deleting_below_the_minimum_names_the_version_still_holding_it(profile):
    """The reason to act (the active model holds deleted writing) outranks 'too little'."""
    ids = add_notes(profile, count=3, words_each=400)
    with profile.store.write() as session:
        adapter = Adapter(version="v1", path="/nowhere", base_sha256="0" * 64, is_active=True,
                          activated_at=utcnow())
        session.add(adapter)
        session.flush()
        session.add_all(AdapterDocument(adapter_id=adapter.id, document_id=i) for i in ids)
    profile.forget(ids[0], ids[1])
    words = profile.writing.stats().words
    assert retrain_due(profile) == (False, (
        f"the active v1 was trained on writing you have since deleted, and the {words} words "
        "left are too few to retrain (a model needs at least 1,000): turn v1 off or delete it"))


def test_not_due_until_enough_new_words(profile):
    profile.set("retrain_min_words", 2000)
    add_notes(profile, count=4, words_each=300)
    due, why = retrain_due(profile)
    words = profile.writing.stats().words_since_adapter
    assert not due and why == (f"{words:,} new words so far; an automatic retrain waits for "
                               "2,000")
    add_notes(profile, count=4, words_each=300, seed=1)
    assert retrain_due(profile)[0]


def test_not_due_again_before_the_minimum_hours(profile):
    profile.set("retrain_min_words", 100)
    profile.set("retrain_min_hours", 24)
    add_notes(profile, count=3, words_each=400)
    record_run(profile, "succeeded", hours_ago=2)
    due, why = retrain_due(profile)
    assert not due and "the last run started 2.0 h ago; next in 22.0 h" in why
    record_run(profile, "cancelled", hours_ago=0)  # a run the user stopped does not count
    profile.set("retrain_min_hours", 1.5)
    words = profile.writing.stats().words
    assert retrain_due(profile) == (True, f"{words:,} new words so far")


def test_a_failed_run_holds_the_next_off_for_an_hour_only(profile):
    profile.set("retrain_min_words", 100)
    profile.set("retrain_min_hours", 24)
    add_notes(profile, count=3, words_each=400)
    record_run(profile, "failed", hours_ago=0.5)  # e.g. too little writing back then
    due, why = retrain_due(profile)
    assert not due and "the last failed run started 0.5 h ago; next in 0.5 h" in why
    record_run(profile, "failed", hours_ago=1.5)
    with profile.store.write() as session:  # the newest failure is 1.5 h old now
        session.query(TrainingRun).filter(TrainingRun.status == "failed").update(
            {TrainingRun.started_at: utcnow() - timedelta(hours=1.5)})
    assert retrain_due(profile)[0]


def test_words_already_trained_on_do_not_count(profile):
    profile.set("retrain_min_words", 100)
    ids = add_notes(profile, count=3, words_each=400)
    with profile.store.write() as session:
        adapter = Adapter(version="v1", path="/nowhere", base_sha256="0" * 64)
        session.add(adapter)
        session.flush()
        session.add_all(AdapterDocument(adapter_id=adapter.id, document_id=i) for i in ids)
    due, why = retrain_due(profile)
    assert not due and why.startswith("0 new words")


def test_not_due_while_running_or_switched_off(profile):
    profile.set("retrain_min_words", 100)
    add_notes(profile, count=3, words_each=400)
    profile.set("auto_retrain", False)
    assert retrain_due(profile) == (False, "automatic retraining is off (auto_retrain = false)")
    profile.set("auto_retrain", True)
    record_run(profile, "running", hours_ago=30)
    due, why = retrain_due(profile)
    assert not due and why.endswith("is in progress")


def test_an_active_adapter_trained_on_deleted_writing_makes_a_retrain_due(profile):
    """Deleting writing asks for a retrain that forgets it, however little is new; once:
    a run started since the deletion (failed, or not promoted) does not make it due again."""
    profile.set("retrain_min_words", 1000)
    profile.set("retrain_min_hours", 24)
    ids = add_notes(profile, count=4, words_each=400)
    with profile.store.write() as session:
        adapter = Adapter(version="v1", path="/nowhere", base_sha256="0" * 64, is_active=True,
                          activated_at=utcnow() - timedelta(hours=48))
        session.add(adapter)
        session.flush()
        session.add_all(AdapterDocument(adapter_id=adapter.id, document_id=i) for i in ids)
    assert not retrain_due(profile)[0]
    profile.forget(ids[0])
    assert retrain_due(profile) == (
        True, "the active v1 was trained on writing you have since deleted")
    record_run(profile, "succeeded", hours_ago=50)  # the run that made v1: no matter
    assert retrain_due(profile)[0]
    with profile.store.write() as session:  # v1 made and activated an hour ago
        session.get(Adapter, adapter.id).activated_at = utcnow() - timedelta(hours=1.5)
    record_run(profile, "succeeded", hours_ago=2)
    assert retrain_due(profile)[0]  # at once: not after the 24 hours between retrains
    # A run since v1 became active but before the deletion (one whose adapter did not
    # beat v1, say) did not answer it.
    record_run(profile, "failed", hours_ago=1)
    assert retrain_due(profile)[0]
    record_run(profile, "failed", hours_ago=0)  # since the deletion: too little left, say
    due, why = retrain_due(profile)
    assert not due and why.startswith("0 new words since the last training")
