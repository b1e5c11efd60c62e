"""The user's adapter as a file they own: export it (zip, bare GGUF, merged GGUF), import one.

An import is validated completely before anything is written: format, pickles, the
safetensors header, the base model it was trained on, and every tensor's name and shape
against this profile's base. Only then does a new version folder appear (atomically),
with a GGUF written for this base, and its row. It is activated only when asked.
"""

import os
import shutil
from pathlib import Path

from oppu.core.adapters import (
    AdapterError,
    AdapterVersion,
    active,
    adapter_gguf_damage,
    find,
    list_adapters,
    rewrite_adapter_gguf,
)
from oppu.core.progress import Progress, Report, ignore
from oppu.trainer.adapter_bundle import BundleError

FORMATS = ("zip", "gguf", "merged")
DIRECT_TYPES = ("q8_0", "f16")  # merged types written directly; others via llama.cpp's quantizer
SUFFIXES = {"zip": ".zip", "gguf": "-adapter.gguf", "merged": "-merged-{quant}.gguf"}


def quant_choices() -> tuple[str, ...]:
    from oppu.trainer.merge import QUANTIZE_TYPES

    return DIRECT_TYPES + tuple(QUANTIZE_TYPES)


def find_version(profile, version: str | None) -> AdapterVersion:
    """`version`, or the active one when None; AdapterError naming what exists otherwise."""
    if version is not None:
        return find(profile, version)
    current = active(profile)
    if current is None:
        versions = list_adapters(profile)
        raise AdapterError("no adapter is active: train one, or name a version with "
                           "--version" + (f" ({', '.join(v.version for v in versions)})"
                                          if versions else ""))
    return current


def profile_base(profile) -> tuple[Path, str]:
    """The profile's base GGUF and its sha256."""
    from oppu.core.chat import base_sha256
    from oppu.trainer.base_models import resolve_base
    from oppu.trainer.prepare import BaseModelError

    try:
        path = resolve_base(profile.settings.base_model)
    except BaseModelError as error:
        raise AdapterError(str(error)) from None
    return path, base_sha256(path)


def default_output(profile, version: str, format: str, quant: str) -> Path:
    return Path.cwd() / f"oppu-{profile.name}-{version}{SUFFIXES[format].format(quant=quant)}"


def export(profile, version: str | None = None, format: str = "zip", quant: str | None = None,
           out: Path | str | None = None, report: Report = ignore,
           overwrite: bool = False) -> Path:
    """Write one adapter version as a file the user owns; return its path.

    `out` is a file, or a folder (one that exists, or any path ending in a separator) to
    write the default name into. A file already there is replaced only with `overwrite`
    (without `out`, the earlier export in the default place is replaced).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    if quant is not None and format != "merged":
        raise ValueError("a quantization type applies to --format merged only")
    quant = quant or DIRECT_TYPES[0]
    if format == "merged" and quant not in quant_choices():
        raise ValueError(f"quant must be one of {', '.join(quant_choices())}, not {quant!r}")
    chosen = find_version(profile, version)
    if not chosen.peft_dir.is_dir():  # the weights as trained; the rest is made from them
        raise AdapterError(f"adapter {chosen.version}'s files are missing from {chosen.path}")
    default = default_output(profile, chosen.version, format, quant)
    target = Path(out).expanduser() if out else default
    if target.is_dir() or str(out or "").endswith(("/", os.sep)):
        try:
            target.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise AdapterError(f"cannot make the folder {target}: a file is in the way") from None
        target = target / default.name
    elif not target.parent.is_dir():
        raise AdapterError(f"cannot write {target}: {target.parent} is not a folder (end the "
                           "path with / to make a new folder)")
    _refuse_wrong_suffix(target, format)
    if out is not None and target.exists() and not overwrite:
        raise AdapterError(f"{target} already exists: choose another name, or replace it "
                           "(--force)")
    report(Progress("export", 0, 1, f"{chosen.version} as {format}"))
    if format != "merged":
        _repair_adapter_gguf(profile, chosen)
    if format == "zip":
        _export_zip(chosen, target)
    elif format == "gguf":
        from oppu.storage.atomic import write_bytes

        write_bytes(target, chosen.gguf_path.read_bytes())
    else:
        _export_merged(profile, chosen, target, quant, report)
    report(Progress("export", 1, 1, str(target)))
    return target


def format_for(path: Path | str, quant: str | None = None) -> str:
    """The format a file name (and a quantization type) asks for: a merged model when a
    type is given, a bare adapter for .gguf, else the zip."""
    if quant:
        return "merged"
    return "gguf" if Path(path).suffix.lower() == ".gguf" else "zip"


def _refuse_wrong_suffix(target: Path, format: str) -> None:
    wanted = "." + SUFFIXES[format].rsplit(".", 1)[1]
    given = target.suffix.lower()
    if given in {".zip", ".gguf"} and given != wanted:
        raise AdapterError(f"{target.name} ends in {given}, but the {format} format writes a "
                           f"{wanted} file: name it {target.stem}{wanted}")


def _repair_adapter_gguf(profile, chosen: AdapterVersion) -> None:
    """Write the version's adapter.gguf again when it is damaged or gone, so that no
    export carries a damaged copy."""
    damage = adapter_gguf_damage(chosen)
    if damage is None:
        return
    base_path, sha = profile_base(profile)
    if sha != chosen.base_sha256:
        raise AdapterError(f"adapter {chosen.version}'s {chosen.gguf_path.name} is damaged "
                           f"({damage}), and it can be written again only with the base it "
                           f"was trained on, {chosen.base_name}")
    from oppu.trainer.peft_files import AdapterFileError

    try:
        rewrite_adapter_gguf(chosen, base_path)
    except AdapterFileError as error:  # its trained weights are damaged as well
        raise AdapterError(f"adapter {chosen.version} is damaged: {chosen.gguf_path.name} "
                           f"({damage}) and its trained weights ({error})") from None


def _export_zip(chosen: AdapterVersion, target: Path) -> None:
    from oppu.trainer.adapter_bundle import bundle_meta, write_bundle_zip
    from oppu.trainer.gguf_file import read_header
    from oppu.trainer.peft_files import read_peft_dir
    from oppu.trainer.versions import app_version, read_meta

    stored = read_meta(chosen.path)
    training = {k: stored[k] for k in ("metrics", "train_words", "config", "preset", "decision",
                                       "created", "imported_from") if k in stored}
    architecture = read_header(chosen.gguf_path).get("general.architecture", "")
    meta = bundle_meta(chosen.version, chosen.base_name, chosen.base_sha256, architecture,
                       read_peft_dir(chosen.peft_dir), training, app_version(),
                       chosen.created_at.isoformat())
    write_bundle_zip(chosen.path, target, meta)


def _export_merged(profile, chosen: AdapterVersion, target: Path, quant: str,
                   report: Report) -> None:
    from oppu.trainer.merge import write_merged_gguf, write_served_gguf

    base_path, sha = profile_base(profile)
    if sha != chosen.base_sha256:
        raise AdapterError(f"adapter {chosen.version} was trained on {chosen.base_name}, but "
                           f"this profile's base is now {base_path.name}; switch the base back "
                           "to merge it")
    def progress(done: int, total: int, name: str) -> None:
        report(Progress("merge", done, total, name))

    if quant == "q8_0":  # the copy chat serves: copied where there is one, else made alike
        if not _copied(chosen.merged_path, target):
            write_served_gguf(chosen.peft_dir, base_path, target, progress)
        return
    if quant in DIRECT_TYPES:  # every block weight in that type, as the served copy
        write_merged_gguf(chosen.peft_dir, base_path, target, quant, report=progress,
                          all_block_weights=True)
    else:  # adapted ones in q8_0, then every one through llama.cpp's quantizer
        write_merged_gguf(chosen.peft_dir, base_path, target, "q8_0", quant, progress)


def _copied(merged: Path | None, target: Path) -> bool:
    """Copy a whole merged copy to `target`; False when there is none, or none intact."""
    from oppu.storage.atomic import atomic_path
    from oppu.trainer.gguf_file import GGUFFormatError, read_header

    if merged is None:
        return False
    try:
        read_header(merged)
        with atomic_path(target) as temp:
            shutil.copyfile(merged, temp)
    except (GGUFFormatError, OSError):  # damaged, or removed by a training meanwhile
        return False
    return True


class AlreadyStored(BundleError):
    """The adapter is one a version already holds (`version`); `summary_added` when the
    file's training summary was added to a version imported without one."""

    def __init__(self, message: str, version: str, summary_added: bool = False):
        super().__init__(message)
        self.version = version
        self.summary_added = summary_added


class ForeignBase(BundleError):
    """Trained on another base model: `force` imports it if it fits this one."""


def import_adapter(profile, path: Path, activate: bool = False, force: bool = False
                   ) -> AdapterVersion:
    """A new adapter version from an exported zip or adapter .gguf (or a PEFT folder),
    origin 'imported'."""
    from oppu.trainer.adapter_bundle import BundleError, read_bundle
    from oppu.trainer.gguf_adapter import lora_tensors, read_base_info
    from oppu.trainer.peft_files import AdapterFileError

    path = Path(path).expanduser()
    base_path, sha = profile_base(profile)
    base = read_base_info(base_path)
    bundle = read_bundle(path, base)
    claimed = bundle.meta.get("base", {})
    if claimed.get("sha256") != sha:
        if not force:
            reason = (f"it was trained on {claimed.get('name', 'another base')} (sha256 "
                      f"{str(claimed['sha256'])[:12]}), not on this profile's base "
                      f"{base_path.name} ({sha[:12]})" if claimed.get("sha256") else
                      "it does not say which base model it was trained on")
            raise ForeignBase(f"{path.name} refused: {reason}")
        if claimed.get("architecture") not in (None, base.architecture):
            raise BundleError(f"{path.name} is for a {claimed['architecture']} model, this "
                              f"profile's base is {base.architecture}: it cannot fit")
    try:
        lora_tensors(bundle.lora, base)
    except AdapterFileError as error:
        raise BundleError(f"{path.name} does not fit {base_path.name}: {error}") from None
    try:
        _refuse_stored(profile, bundle, sha)  # early, before the merged copy is written
    except AlreadyStored as stored:
        if not _add_missing_summary(profile, stored.version, bundle):
            raise
        raise AlreadyStored(f"{path.name} is already stored as version {stored.version}; "
                            "its training summary, missing there, was added from this file",
                            stored.version, summary_added=True) from None
    return _store_import(profile, bundle, base_path, sha, activate)


def _training_summary(bundle) -> dict:
    """What a version keeps of its file's description of the training."""
    training = bundle.meta.get("training", {})
    return {"metrics": training.get("metrics", {}),
            "train_words": training.get("train_words", 0),
            "config": training.get("config", {})}


def _add_missing_summary(profile, version: str, bundle) -> bool:
    """Give an imported `version` that lacks a training summary (a bare .gguf carries
    none) the one in `bundle` (its zip); whether there was one to add."""
    from oppu.storage.models import Adapter
    from oppu.trainer.versions import read_meta, version_folder, write_meta

    summary = _training_summary(bundle)
    if not summary["metrics"] and not summary["train_words"]:
        return False
    with profile.store.write() as session:
        row = session.query(Adapter).filter_by(version=version).one()
        if row.origin != "imported" or row.metrics or row.words_trained:
            return False
        folder = version_folder(profile.folder, row)
        write_meta(folder, read_meta(folder) | summary)  # first: the row says it is there
        row.metrics = summary["metrics"]
        row.words_trained = int(summary["train_words"] or 0)
    return True


def _refuse_stored(profile, bundle, sha: str) -> None:
    """AlreadyStored when a version for the base `sha` holds the same adapter as `bundle`:
    the same scale, modules and weights, whichever file it came in (a zip holds the PEFT
    files, an adapter .gguf the tensors llama.cpp reads; both decode to the same numbers).
    One kept for another base does not count: imported again, it serves this base."""
    from oppu.trainer.peft_files import AdapterFileError, read_peft_dir

    for stored in list_adapters(profile):
        if stored.base_sha256 != sha:
            continue
        try:
            kept = read_peft_dir(stored.peft_dir)
        except (OSError, AdapterFileError):  # gone or unreadable: nothing to compare
            continue
        if kept.same_adapter(bundle.lora):
            raise AlreadyStored(f"{bundle.source.name} is already stored as version "
                                f"{stored.version}; nothing imported", stored.version)


def _store_import(profile, bundle, base_path: Path, sha: str, activate: bool) -> AdapterVersion:
    from oppu.storage.atomic import staged_dir
    from oppu.storage.models import Adapter, utcnow
    from oppu.trainer.peft_files import CONFIG_NAME, WEIGHTS_NAME
    from oppu.trainer.versions import (
        PEFT_DIR,
        app_version,
        claimed_version,
        drop_old_merged_copies,
        make_active,
        recorded_path,
        write_meta,
        write_model_files,
    )

    adapters_dir = profile.adapters_dir
    meta = {"origin": "imported", "imported_from": bundle.source.name,
            "source": {k: bundle.meta[k] for k in ("version", "base", "app_version", "created")
                       if k in bundle.meta},
            "base": {"name": base_path.name, "sha256": sha},
            "rank": bundle.lora.rank, "alpha": bundle.lora.alpha,
            **_training_summary(bundle), "app_version": app_version(),
            "created": utcnow().isoformat()}
    with staged_dir(adapters_dir) as staged:
        (staged / PEFT_DIR).mkdir()
        (staged / PEFT_DIR / CONFIG_NAME).write_bytes(bundle.config_bytes)
        (staged / PEFT_DIR / WEIGHTS_NAME).write_bytes(bundle.weights_bytes)
        write_model_files(staged, base_path, sha)
        with claimed_version(profile.store, adapters_dir, staged) as (session, version):
            _refuse_stored(profile, bundle, sha)  # again, under the lock: a parallel import
            write_meta(staged, meta | {"version": version})
            row = Adapter(version=version,
                          path=recorded_path(profile.folder, adapters_dir / version),
                          base_name=base_path.name,
                          base_sha256=sha, origin="imported", metrics=meta["metrics"],
                          words_trained=int(meta["train_words"] or 0))
            session.add(row)
            session.flush()
            if activate:
                make_active(session, row)
    with profile.store.read() as session:
        drop_old_merged_copies(session, adapters_dir, version)
    return find_version(profile, version)
