"""When a retrain is due: enough new writing since the last adapter, and enough time since
the last run. `oppu train --if-due` (cron, a systemd timer) and the app both ask here."""

from datetime import timedelta

from sqlalchemy import select

from oppu.core.training import live_run
from oppu.storage.models import TrainingRun, utcnow


def retrain_due(profile) -> tuple[bool, str]:
    """(due, why): the reason reads as one line either way."""
    settings = profile.settings
    if not settings.auto_retrain:
        return False, "automatic retraining is off (auto_retrain = false)"
    busy = live_run(profile)
    if busy is not None:
        return False, f"training run {busy} is in progress"
    new_words = profile.writing.stats().words_since_adapter
    if new_words < settings.retrain_min_words:
        return False, (f"{new_words} new words since the last adapter; "
                       f"a retrain needs {settings.retrain_min_words}")
    with profile.store.read() as session:
        last = session.scalar(select(TrainingRun.started_at)
                              .where(TrainingRun.status != "cancelled")
                              .order_by(TrainingRun.started_at.desc()).limit(1))
    if last is not None:
        waited = utcnow() - last
        wait = timedelta(hours=settings.retrain_min_hours)
        if waited < wait:
            left = (wait - waited).total_seconds() / 3600
            return False, (f"{new_words} new words, but the last run started "
                           f"{waited.total_seconds() / 3600:.1f} h ago; next in {left:.1f} h")
    return True, f"{new_words} new words since the last adapter"
