"""Top-1 agreement of each weight format with transformers' goldens (the real 270M GGUF).

    python bench/fidelity.py --weights q4_0,q8_0 --out bench/results/fidelity-270m.json
    python bench/fidelity.py --weights q4_0 --embed-format q8_0     # the tied embedding/head in q8_0

For every golden prompt, the logits of prompt + golden greedy continuation (teacher forcing, one
prefill) are computed on this machine's Vulkan device; reported: top-1 agreement over all checked
positions, greedy steps that differ (with transformers' margin there), and the worst logit error
against the golden top-10 values.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    from gemforge.runtime.model import Model
    from gemforge.runtime.model_store import default_model_path
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="q4_0")
    ap.add_argument("--greedy", type=int, default=16)
    ap.add_argument("--embed-format", help="the tied embedding / output head in this format instead (an experiment)")
    ap.add_argument("--out")
    a = ap.parse_args()
    goldens = json.loads((ROOT / "tests/fixtures/goldens.json").read_text())["prompts"]
    report = {}
    for fmt in a.weights.split(","):
        model = Model.load(default_model_path(), fmt, context=2048)
        if a.embed_format:
            from gemforge.runtime.gguf_loader import load_weights
            from gemforge.runtime.kernels import upload_packed_weight
            words, N, K = load_weights(default_model_path(), a.embed_format).matrix("token_embd.weight")
            eng = model.engine
            eng.embed = upload_packed_weight(eng.device, words, a.embed_format, N, K, "token_embd")
            eng.forget_steps()                   # recorded steps bind the old table
        agree = total = 0
        worst = 0.0
        flips = []
        for g in goldens:
            n = len(g["ids"])
            ids = list(g["ids"]) + list(g["greedy"][:a.greedy])
            pos = list(range(len(ids) - 1))
            logits = model.logits(ids, pos)
            am = logits.argmax(axis=1)
            want = [g["top_ids"][p][0] if p < n else g["greedy"][p - n + 1] for p in pos]
            agree += int(np.sum(am == np.asarray(want)))
            total += len(pos)
            top = np.asarray(g["top_ids"])
            worst = max(worst, float(np.abs(np.take_along_axis(logits[:n], top, axis=1)
                                            - np.asarray(g["top_logits"])).max()))
            for s in range(a.greedy):
                if int(am[n - 1 + s]) != g["greedy"][s]:
                    flips.append({"prompt": g["name"], "step": s, "margin": g["greedy_margin"][s]})
        model.close()
        report[fmt + (f"+embed_{a.embed_format}" if a.embed_format else "")] = {"top1_agreement": agree / total, "positions": total, "greedy_steps_checked": a.greedy,
                       "greedy_flips": flips, "max_abs_logit_error_top10": worst,
                       "device": model.device.info.name}
        print(f"{fmt}: top-1 {agree}/{total} = {agree / total:.4f}; greedy flips {flips}; "
              f"max |logit error| {worst:.3f}", file=sys.stderr)
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
