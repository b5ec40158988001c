"""Merge one device call's peer results (llama.cpp Vulkan, ../shared/peer) and `gemforge bench` results.

    python bench/compare.py PEER_RESULTS.json OURS.json [OURS.json ...] [PEER2.json OURS.json ...] --out bench/results/h200-vs-llamacpp.json

Each peer results file starts a group: the gemforge results after it were measured in the same device
call, and each case pairs only within its group (a later group's case replaces an earlier one's).
Writes one JSON (both sides, ratios per case, the commands) and prints a Markdown table for the README.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGETS = {  # issue 9's targets (tokens/s): decode, prefill-512
    ("gemma3-270m", "q8_0"): (2000, 60000), ("gemma3-1b", "q8_0"): (1000, 32000),
    ("gemma3-4b", "q8_0"): (600, 16000), ("gemma3-12b", "q8_0"): (270, 5500),
    ("gemma3-27b", "q8_0"): (120, 3500), ("gemma3-27b", "q4_0"): (220, 3500),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+", help="a peer results.json, then that call's gemforge JSONs; repeat per call")
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", default="", help="the device command that produced the inputs")
    a = ap.parse_args()
    groups = []                      # [(peer results, [gemforge JSON paths])]
    for f in a.files:
        d = json.loads(Path(f).read_text())
        if isinstance(d, dict) and "cases" in d:
            groups.append((d, []))
        elif not groups:
            raise SystemExit(f"{f}: gemforge results before any peer results file")
        else:
            groups[-1][1].append(f)
    by_case = {}
    for call, (peer, ours) in enumerate(groups, 1):
        by_label = {c["label"]: c for c in peer["cases"]}
        for f in ours:
            for r in json.loads(Path(f).read_text()):
                size = r["model"].split("-")[1]
                label = f"{size}-{r['weights'].upper()}"
                p = by_label.get(label)
                pd = p["tg128"]["tok_s_median"] if p else None
                pp = p["pp512"]["tok_s_median"] if p else None
                od, op = r["decode_tok_s"]["median"], r["prefill_tok_s"]["median"]
                tgt = TARGETS.get((r["model"], r["weights"]), (None, None))
                by_case[label] = {"case": label, "call": call, "gemforge_decode": od, "llamacpp_decode": pd,
                                  "decode_ratio": od / pd if pd else None, "decode_target": tgt[0],
                                  "gemforge_prefill512": op, "llamacpp_prefill512": pp,
                                  "prefill_ratio": op / pp if pp else None, "prefill_target": tgt[1],
                                  # greedy decode `decode_burst` steps a submit (llama-bench's tg waits for
                                  # every token, as gemforge_decode does: the ratio is on that one)
                                  "gemforge_decode_burst": (r.get("decode_burst_tok_s") or {}).get("median"),
                                  "decode_limit": r["decode_limit_tok_s"],
                                  "bandwidth_fraction": r["decode_bandwidth_fraction"],
                                  "read_bandwidth_gb_s": r["read_bandwidth_gb_s"], "gemforge": r,
                                  "llamacpp": p}
    order = [k for k in ("270m-Q8_0", "1b-Q8_0", "4b-Q8_0", "12b-Q8_0", "27b-Q8_0", "27b-Q4_0") if k in by_case]
    rows = [by_case[k] for k in order] + [v for k, v in by_case.items() if k not in order]
    peer = groups[-1][0]
    out = {"device": peer.get("device"), "peer_build": peer.get("build"), "command": a.command,
           "peer_command": "bash .peer/run.sh (../shared/peer, llama.cpp b11669 Vulkan via cyllama-vulkan 0.7.0)",
           "cases": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print("| case | gemforge decode | llama.cpp decode | ratio | target | gemforge decode in bursts (--burst) | "
          "gemforge pp512 | llama.cpp pp512 | ratio | target |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = lambda v, d=0: "-" if v is None else f"{v:,.{d}f}"
        print(f"| {r['case']} | {f(r['gemforge_decode'], 1)} | {f(r['llamacpp_decode'], 1)} | {f(r['decode_ratio'], 2)} | "
              f"{f(r['decode_target'])} | {f(r['gemforge_decode_burst'], 1)} | "
              f"{f(r['gemforge_prefill512'])} | {f(r['llamacpp_prefill512'])} | "
              f"{f(r['prefill_ratio'], 2)} | {f(r['prefill_target'])} |")


if __name__ == "__main__":
    main()
