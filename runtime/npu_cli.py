"""`gemforge plan`: the projected cost of a placement on Phoenix (registered into the CLI)."""
from __future__ import annotations

import json

from .cli import register

PLAN_EXAMPLES = """examples:
  gemforge plan --placement phoenix --model 27b --weights q8_0
  gemforge plan --placement vulkan --model 27b --weights q8_0      # everything on the iGPU, for comparison
  gemforge plan --placement phoenix --model 270m --context 8192 --json"""


def cmd_plan(args) -> int:
    from gemforge.gen.npu.plan import format_plan, make_plan
    from gemforge.gen.spec import load_specs

    from . import paths
    from .config import model_config
    from .errors import SpecError
    from .placement import load_placement
    if args.context < 1 or args.prefill not in (16, 32, 64, 128, 256):
        raise SpecError(f"--context must be >= 1 and --prefill a bucket (16..256), got {args.context}, {args.prefill}")
    placement = load_placement(args.placement)
    cfg = model_config(args.model)
    specs = load_specs(paths.configs_dir() / "ops")
    plan = make_plan(placement, cfg, specs, args.weights, min(args.context, cfg.context), args.prefill)
    print(json.dumps(plan.to_json(), indent=1) if args.json else format_plan(plan))
    return 0


def _setup_plan(p):
    p.add_argument("--placement", default="phoenix", help="a configs/placement/*.yaml name (default phoenix)")
    p.add_argument("--model", default="270m", help="270m, 1b, 4b, 12b or 27b (default 270m)")
    p.add_argument("--weights", default="q8_0", choices=["f32", "f16", "q8_0", "q4_0"],
                   help="weight format of what runs on the iGPU (NPU matrices are always int8 W8A8)")
    p.add_argument("--context", type=int, default=4096, help="tokens of KV cache attention reads (default 4096)")
    p.add_argument("--prefill", type=int, default=256, help="prefill chunk (bucket) to cost (default 256)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


register("plan", "project per-op cost and tok/s of a placement on Phoenix (NPU + iGPU) from published limits",
         _setup_plan, cmd_plan, PLAN_EXAMPLES)


CHECK_TOLERANCE = 1e-5     # relative to max |reference|: a few fp32 ulps of requantization rounding


def cmd_npu_check(args) -> int:
    from .config import model_config
    from .npu import check_designs
    cfg = model_config(args.model)
    results = check_designs(cfg.name, args.build_dir)
    bad = [r for r in results if r[3] > CHECK_TOLERANCE]
    for name, n, same, rel in results:
        verdict = "bit-identical to" if same else f"within {rel:.1e} of" if rel <= CHECK_TOLERANCE else \
            f"DIFFERENT ({rel:.1e}) from"
        print(f"{'ok  ' if rel <= CHECK_TOLERANCE else 'FAIL'} {name}: {n} outputs {verdict} the numpy W8A8 reference")
    print(f"{len(results) - len(bad)} of {len(results)} NPU designs of {cfg.name} match the reference")
    return 1 if bad else 0


def _setup_npu_check(p):
    p.add_argument("--model", default="270m", help="whose compiled designs to run (default 270m)")
    p.add_argument("--build-dir", default=None, help="the kernel build (default: build/)")


register("npu-check", "run every compiled NPU design of a model on the NPU once and compare with numpy (needs the NPU)",
         _setup_npu_check, cmd_npu_check,
         "examples:\n  gemforge npu-check --model 270m     # on a Phoenix machine, after `make kernels`")
