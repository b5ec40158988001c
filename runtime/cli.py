"""The `gemforge` command.

Exit codes: 0 success; 1 runtime failure; 2 bad spec/config/usage; 3 missing or failing
external tool; 4 device problem (none, lost, out of memory, software-only with
--require-hardware); 5 bad model, tokenizer or prompt; 130 interrupted.
Output goes to stdout, diagnostics to stderr.
"""
from __future__ import annotations

import argparse
import sys
from importlib import metadata

from .errors import GemforgeError

EXAMPLES = {
    "kernels": "examples:\n  gemforge kernels            # build every kernel the configured models need\n"
               "  gemforge kernels --op rmsnorm --jobs 2\n"
               "  gemforge kernels --configs my/configs --templates my/templates --build-dir /tmp/k",
    "doctor": "examples:\n  gemforge doctor\n  gemforge doctor --require-hardware   # exit 4 on a software-only machine",
}


def _version() -> str:
    try:
        return metadata.version("gemforge")
    except metadata.PackageNotFoundError:
        return "unknown"


def _tune_ops(items):
    from gemforge.gen.build import parse_tune_ops
    return parse_tune_ops(items) or None


def cmd_kernels(args) -> int:
    from gemforge.gen.build import build  # the compiler side is only imported for this command
    if args.target == "npu":  # render + check every NPU design; compile only where aiecc and Peano exist
        from gemforge.gen.npu.build import build_npu
        build_npu(args.build_dir, configs_dir=args.configs, templates_dir=args.templates,
                  ops=set(args.op) if args.op else None)
        return 0

    from .progress import Progress
    bar = None

    def progress(done: int, total: int) -> None:  # drawn only when stderr is a terminal
        nonlocal bar
        bar = bar or Progress("compiling kernels", total, "variants")
        bar.advance()

    def log(message: str) -> None:
        if bar:
            bar.close()  # ends the bar's line first
        print(message, file=sys.stderr)

    try:
        build(args.build_dir, configs_dir=args.configs, templates_dir=args.templates, jobs=args.jobs,
              ops=set(args.op) if args.op else None, tune_ops=_tune_ops(args.tune_candidates),
              progress=progress, log=log)
    finally:
        if bar:
            bar.close()
    return 0


def cmd_doctor(args) -> int:
    from .doctor import doctor
    return doctor(require_hardware=args.require_hardware)


COMMANDS = {}


def register(name: str, help: str, setup, func, examples: str = ""):
    COMMANDS[name] = (help, setup, func, examples)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return n


def _setup_kernels(p):
    p.add_argument("--build-dir", default=None, help="where artifacts and manifest.json go (default: build/)")
    p.add_argument("--jobs", "-j", type=_positive_int, default=None,
                   help="parallel compiler processes (default: all cores)")
    p.add_argument("--op", action="append", help="build only this op (repeatable)")
    p.add_argument("--configs", default=None, metavar="DIR",
                   help="configs directory with ops/ and models/ (default: the installed gemforge configs)")
    p.add_argument("--templates", default=None, metavar="DIR",
                   help="templates directory with glsl/ (default: the installed gemforge templates)")
    p.add_argument("--target", choices=["vulkan", "npu"], default="vulkan", help="which kernels to build")
    p.add_argument("--tune-candidates", action="append", metavar="OP",
                   help="also build every point of OP's tuning space for `gemforge tune`; OP:name=value,... "
                        "keeps only the variants with those axis or param values, e.g. matmul:bucket=256 "
                        "or matvec:format=q4_0,wg_size=128 (repeatable; filters of one OP are alternatives)")


def _setup_doctor(p):
    p.add_argument("--require-hardware", action="store_true", help="fail (exit 4) when only a software Vulkan device exists")


register("kernels", "render, check and compile every kernel variant; write build/manifest.json", _setup_kernels,
         cmd_kernels, EXAMPLES["kernels"])
register("doctor", "list Vulkan devices, compilers, NPU toolchain and build state, with fixes", _setup_doctor,
         cmd_doctor, EXAMPLES["doctor"])


def _load_plugins():
    # Commands that live in their own modules register themselves when imported.
    for mod in ("model_cli", "npu_cli", "bench", "tune_cli", "server"):
        try:
            __import__(f"gemforge.runtime.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"gemforge.runtime.{mod}":
                raise


def parser() -> argparse.ArgumentParser:
    _load_plugins()
    ap = argparse.ArgumentParser(prog="gemforge", description="Gemma 3 on Vulkan GPUs and AMD NPUs, from generated kernels.",
                                 epilog="exit codes: 0 ok, 1 runtime failure, 2 bad spec/usage, 3 missing tool, "
                                        "4 device problem, 5 bad model or prompt, 130 interrupted",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"gemforge {_version()}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help, setup, func, examples) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help, epilog=examples,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        setup(p)
        p.set_defaults(func=func)
    return ap


def _one_line(e: GemforgeError) -> str:
    """The message and its fix on one line; a tool's quoted output (several lines) keeps its lines."""
    if not e.hint:
        return e.message
    return f"{e.message}\n  fix: {e.hint}" if "\n" in e.message else f"{e.message} (fix: {e.hint})"


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GemforgeError as e:
        print(f"gemforge: error: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("gemforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # `python -m gemforge.runtime.cli`: run the imported module's main, so that plugin commands
    # (which register into `gemforge.runtime.cli`, not into `__main__`) are there.
    from gemforge.runtime.cli import main as _main
    sys.exit(_main())
