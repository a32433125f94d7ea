"""`python -m meshcore._native_build [build | clean | status]`: compile the modules listed in
`meshcore._native` with mypyc, in place, or remove that build (see `meshcore._native`)."""

from __future__ import annotations

import json
import os
import sys

from ._native import NATIVE_MODULES, PACKAGE, RECORD, _built, _source, decide, sources

GROUP = "meshcore._compiled"  # the shared library: meshcore/_compiled__mypyc*.so


def clean() -> None:
    """Remove the compiled modules and the record of their sources."""
    for path in _built():
        path.unlink()
    RECORD.unlink(missing_ok=True)


def build() -> int:
    """Compile `NATIVE_MODULES` in place (from the checkout's root); on failure, record
    it (the modules then run as Python) and return 1."""
    clean()
    root = PACKAGE.parent
    hashes = sources()
    try:
        from mypyc.build import mypycify  # the dev extra's mypy ships it
        from setuptools import setup  # type: ignore[import-untyped]

        os.chdir(root)
        setup(name="meshcore-native", script_args=["build_ext", "--inplace", "--quiet"],
              ext_modules=mypycify([str(_source(m).relative_to(root)) for m in NATIVE_MODULES],
                                   opt_level="3", group_name=GROUP))
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure leaves plain Python
        clean()
        RECORD.write_text(json.dumps({"failed": f"{type(exc).__name__}: {exc}"}) + "\n")
        print(f"meshcore: the compiled build failed ({exc}); the modules run as Python", file=sys.stderr)
        return 1
    RECORD.write_text(json.dumps({"sources": hashes, "cache_tag": sys.implementation.cache_tag}, indent=1) + "\n")
    return 0


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "build"
    if command == "build":
        return build()
    if command == "clean":
        clean()
        return 0
    if command == "status":
        print(decide(PACKAGE, os.environ)[1])
        return 0
    print("usage: python -m meshcore._native_build [build | clean | status]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
