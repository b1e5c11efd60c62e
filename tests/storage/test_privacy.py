"""The offline switches, and the one environment that may go online (a user's download)."""

import os

from oppu.storage.privacy import OFFLINE_ENV, go_offline, online_env


def test_go_offline_sets_every_switch(monkeypatch):
    for key in OFFLINE_ENV:
        monkeypatch.delenv(key, raising=False)
    go_offline()
    assert {key: os.environ[key] for key in OFFLINE_ENV} == OFFLINE_ENV
    assert {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
            "ANONYMIZED_TELEMETRY"} <= OFFLINE_ENV.keys()


def test_only_the_download_environment_is_online():
    go_offline()
    env = online_env()
    assert not {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"} & env.keys()
    assert env["ANONYMIZED_TELEMETRY"] == "False"  # telemetry stays off even there
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # and this process stays offline
