"""When a retrain is due: enough writing for a model, enough new writing since the last
trained adapter and enough time since the last run that trained (or, shorter, since the
last one that failed); or at once, when the active adapter was trained on writing the user
has since deleted. `oppu train --if-due` (cron, a systemd timer) and the app both ask here."""

from datetime import timedelta

from sqlalchemy import func, select

from oppu.core.training import live_run
from oppu.storage.models import TrainingRun, utcnow
from oppu.trainer.config import run_config
from oppu.trainer.versions import active_adapter

# A failed run (too little writing then, a damaged base, no memory) holds the next
# automatic one off for this long only, not the whole minimum wait between trainings;
# a run the user cancelled holds nothing off.
RETRY_AFTER_FAILURE = timedelta(hours=1)


def retrain_due(profile) -> tuple[bool, str]:
    """(due, why): the reason reads as one line either way."""
    settings = profile.settings
    if not settings.auto_retrain:
        return False, "automatic retraining is off (auto_retrain = false)"
    busy = live_run(profile)
    if busy is not None:
        return False, f"training run {busy} is in progress"
    stats = profile.writing.stats()
    new_words = stats.words_since_adapter
    with profile.store.read() as session:
        active = active_adapter(session)
        forgotten = stale = None
        if active is not None and active.trained_on_deleted:
            stale = active.version
            # Asks for one run, not one after another: a run since the version became
            # active and the deletion (too little writing left, or a new adapter that did
            # not beat the base) leaves the rest to the user, whom My model tells.
            since = max(filter(None, (active.activated_at, active.deleted_writing_at)),
                        default=None)
            tried = since is not None and session.scalar(
                select(func.count(TrainingRun.id)).where(
                    TrainingRun.status.in_(("succeeded", "failed")),
                    TrainingRun.started_at > since))
            forgotten = None if tried else active.version
        latest = dict(session.execute(
            select(TrainingRun.status, func.max(TrainingRun.started_at))
            .where(TrainingRun.status.in_(("succeeded", "failed")))
            .group_by(TrainingRun.status)).all())
    needed = run_config(settings.training_preset, settings.training_device).min_words
    if stats.words < needed:
        if stale:
            return False, (f"the active {stale} was trained on writing you have since deleted, "
                           f"and the {stats.words:,} words left are too few to retrain (a "
                           f"model needs at least {needed:,}): turn {stale} off or delete it")
        return False, (f"{stats.words:,} words of writing so far; a model needs at least "
                       f"{needed:,}")
    since = "since the last training" if stats.adapter_trained else "so far"
    if new_words >= settings.retrain_min_words:
        reason = f"{new_words:,} new words {since}"
    elif forgotten:
        reason = f"the active {forgotten} was trained on writing you have since deleted"
    else:
        return False, (f"{new_words:,} new words {since}; an automatic retrain waits for "
                       f"{settings.retrain_min_words:,}")
    # Forgetting does not wait out the pause between retrains: the user asked for it gone.
    minimum = timedelta(0) if forgotten else timedelta(hours=settings.retrain_min_hours)
    now = utcnow()
    for status, wait, what in (("succeeded", minimum, "run"),
                               ("failed", min(minimum, RETRY_AFTER_FAILURE), "failed run")):
        last = latest.get(status)
        if last is not None and now - last < wait:
            waited = (now - last).total_seconds() / 3600
            left = wait.total_seconds() / 3600 - waited
            return False, (f"{reason}, but the last {what} started "
                           f"{waited:.1f} h ago; next in {left:.1f} h")
    return True, reason
