"""Write bench/results/packaging.{json,md} from the last build and smoke test.

    bash packaging/build.sh && bash packaging/smoke_test.sh && python packaging/record_results.py

Baseline, measured in the same run: the size of the build environment's site-packages,
that is, what a plain venv install of OPPU puts on disk.
"""

import json
import platform
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
RESULTS = ROOT / "bench" / "results"
TARGET_MB = 1536


def size_mb(path: Path) -> int:
    return int(subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def largest_parts(bundle: Path, count: int = 8) -> list[tuple[str, int]]:
    internal = bundle / "_internal"
    sizes = [(path.name, size_mb(path)) for path in internal.iterdir()]
    return sorted(sizes, key=lambda item: -item[1])[:count]


def main() -> int:
    build = json.loads((BUILD / "packaging-stats.json").read_text())
    smoke_file = BUILD / "smoke-stats.json"
    smoke = json.loads(smoke_file.read_text()) if smoke_file.exists() else {}
    bundle = ROOT / build["bundle"]
    venv_mb = size_mb(Path(sysconfig.get_paths()["purelib"]))
    results = {
        "bundle_mb": build["bundle_mb"], "build_s": build["build_s"],
        "venv_site_packages_mb": venv_mb,
        "bundle_vs_venv": round(build["bundle_mb"] / venv_mb, 2),
        "target_mb": TARGET_MB, "under_target": build["bundle_mb"] < TARGET_MB,
        "largest_parts_mb": dict(largest_parts(bundle)),
        **{key: smoke[key] for key in ("window_s", "ask_s", "network", "load_1min") if key in smoke},
        "machine": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "packaging.json").write_text(json.dumps(results, indent=1) + "\n")
    rows = [
        ("bundle (dist/oppu)", f"{results['bundle_mb']} MB"),
        ("baseline: venv site-packages", f"{venv_mb} MB"),
        ("bundle / baseline", f"{results['bundle_vs_venv']}"),
        ("target (CPU build)", f"< {TARGET_MB} MB: {'met' if results['under_target'] else 'MISSED'}"),
        ("build time (PyInstaller, --clean)", f"{results['build_s']} s"),
    ]
    if smoke:
        rows += [("empty HOME, no network: main window shown after", f"{smoke['window_s']} s"),
                 ("`oppu ask` on the bundled SmolLM2, cold", f"{smoke['ask_s']} s"),
                 ("load average when asked (2 cores)", f"{smoke.get('load_1min', '?')}")]
    measured = (f"Measured on {results['machine']} (2 shared cores; other jobs running, so "
                "times are noisy). Reproduce: `bash packaging/build.sh && bash "
                "packaging/smoke_test.sh && python packaging/record_results.py`.")
    lines = ["# Packaging: the PyInstaller desktop bundle", "", measured, "",
             "| measure | value |", "| --- | --- |", *[f"| {a} | {b} |" for a, b in rows], "",
             "Largest parts of `_internal/`:", "", "| part | MB |", "| --- | --- |",
             *[f"| {name} | {mb} |" for name, mb in results["largest_parts_mb"].items()]]
    if smoke:
        lines += ["", f"`oppu ask \"{smoke['question']}\"` answered:", "",
                  *[f"> {line}" for line in smoke["answer"].splitlines()]]
    (RESULTS / "packaging.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
