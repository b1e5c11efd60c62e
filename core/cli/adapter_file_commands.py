"""`oppu export | import-adapter`: the personal adapter as a file the user owns."""


from pathlib import Path

from oppu.core.cli import CommandError, given_path, open_profile, profile_to_store_in
from oppu.core.cli.progress_bar import ProgressBar
from oppu.core.cli.training_commands import serve_version


def register(commands) -> None:
    export = commands.add_parser(
        "export", help="export your adapter: a .zip, a bare adapter .gguf or a merged .gguf")
    export.add_argument("--format", choices=["zip", "gguf", "merged"],
                        help="zip: peft + gguf + README (the default, unless -o names a "
                             ".gguf file, or --quant is given for merged); gguf: for llama.cpp "
                             "--lora and Ollama ADAPTER; merged: base and adapter in one model "
                             "file")
    export.add_argument("--quant", metavar="TYPE",
                        help="merged only: q8_0 (default), f16, or a smaller type made by "
                             "llama.cpp's quantizer such as q4_k_m")
    export.add_argument("-o", "--output", type=given_path, help="file or folder (existing, or ending in /) to "
                                               "write to")
    export.add_argument("--force", action="store_true", help="replace a file already there")
    export.add_argument("--version", help="which adapter version (default: the active one)")
    export.set_defaults(run=run_export)

    imports = commands.add_parser("import-adapter",
                                  help="import an adapter exported by `oppu export`")
    imports.add_argument("path", type=given_path, help="a .zip from `oppu export`, a bare adapter .gguf, "
                                                     "or a PEFT adapter folder")
    imports.add_argument("--activate", action="store_true", help="make it the active adapter")
    imports.add_argument("--force", action="store_true",
                         help="import even if it was trained on another base model whose "
                              "architecture and shapes match")
    imports.set_defaults(run=run_import)


def run_export(args) -> int:
    from oppu.core.adapter_files import export, format_for
    from oppu.core.adapters import AdapterError

    format = args.format or format_for(args.output or "", args.quant)
    with open_profile(args) as profile:
        try:
            path = export(profile, args.version, format, args.quant, args.output,
                          ProgressBar(), overwrite=args.force)
        except AdapterError as error:
            raise CommandError(str(error)) from None
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def run_import(args) -> int:
    from oppu.core.adapter_files import AlreadyStored, ForeignBase, import_adapter
    from oppu.core.adapters import AdapterError, activate

    path = Path(args.path)
    with profile_to_store_in(args) as profile:
        try:
            imported = import_adapter(profile, path, args.activate, args.force)
        except AlreadyStored as error:
            if not args.activate and error.summary_added:  # something was done after all
                print(error)
                return 0
            if not args.activate:
                raise CommandError(str(error)) from None
            try:  # what was asked for: that adapter, active
                imported = activate(profile, error.version)
            except AdapterError as failure:
                raise CommandError(str(failure)) from None
            print(f"{path.name} is already stored as {imported.version}; it is now "
                  "active", flush=True)
            serve_version(profile, imported)
            return 0
        except ForeignBase as error:
            raise CommandError(f"{error}; --force imports it anyway when its architecture "
                               "and shapes fit") from None
        except AdapterError as error:
            raise CommandError(str(error)) from None
    state = "active" if imported.is_active else "not active: `oppu activate " + \
        imported.version + "` to use it"
    print(f"imported {path.name} as {imported.version} ({state})")
    return 0
