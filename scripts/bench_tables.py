#!/usr/bin/env python3
"""Markdown tables of a `tess bench all --output FILE` report, as
docs/performance.md shows them (so the doc's tables can be regenerated from
the JSON of a run instead of being copied by hand).

    python3 scripts/bench_tables.py bench.json
"""
import json
import sys


def pct(x):
    return f"{100 * x:.1f}%"


def machine_section(r):
    m, after = r["machine"], r.get("machine_after", r["machine"])
    print(f"Machine: {m['cpu']} ({m['cores']} cores), torch threads {m['torch_threads']}; load average "
          f"{' / '.join(f'{x:.2f}' for x in m['load_average'])} at the start, "
          f"{' / '.join(f'{x:.2f}' for x in after['load_average'])} at the end (1 / 5 / 15 min).\n")


def peak_section(r):
    p = r["peak"]
    print(f"Peak ({p['method']}, {p['threads']} threads):\n")
    print("| n | fp32 GF/s | bf16 GF/s |\n| --- | --- | --- |")
    for f, b in zip(p["fp32"]["by_size"], p["bf16"]["by_size"]):
        print(f"| {f['n']} | {f['gflops']:.1f} | {b['gflops']:.1f} |")
    print(f"| **best** | **{p['fp32']['gflops']:.1f}** | **{p['bf16']['gflops']:.1f}** |\n")


def train_section(r):
    print("Training step (MFU against the measured peak of the case's precision):\n")
    print("| case | B x L | span | tokens/s | step s (pair spread) | GF/s | MFU | data / noise / fwd / self-cond / bwd "
          "/ opt | input path s | peak RSS | RSS above baseline / `tess plan` | live tensors / `tess plan` "
          "| CPU allocator (hits / misses per step) | eager / tess |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in r["train"]["cases"]:
        if "skipped" in c:
            print(f"| {c['case']} | {c['skipped']} |")
            continue
        b = c["breakdown_s"]
        shares = " / ".join(f"{100 * b[k] / c['step_s']:.0f}" for k in
                            ("data", "noise", "forward", "self_condition", "backward", "optimizer"))
        eager = f"{c['eager_over_tess']:.2f}x" if "eager_over_tess" in c else "-"
        spread = f" ({100 * c['pair_spread']:.0f}%)" if "pair_spread" in c else ""
        # Reports before the tensor counter have no tensors_over_plan.
        tensors = f"{c['tensors_over_plan']:.3f}x" if "tensors_over_plan" in c else "-"
        a = c.get("cpu_allocator", {"kind": "system"})
        allocator = (f"caching ({a['timed_step_hits']:.0f} / {a['timed_step_misses']:.1f})" if a["kind"] == "caching"
                     else a["kind"])
        print(f"| {c['case']} | {c['batch']} x {c['seq_len']} | {c['span_tokens']} | {c['tokens_per_s']:,.0f} "
              f"| {c['step_s']:.3f}{spread} | {c['achieved_gflops']:.1f} | {pct(c['mfu'])} | {shares} % "
              f"| {c['input_path_s']:.3f} | {c['peak_rss_bytes'] / 2**20:,.0f} MB "
              f"| {c['rss_over_plan']:.2f}x of {c['plan_bytes'] / 2**20:,.0f} MB | {tensors} | {allocator} | {eager} |")
    print()


def sample_section(r):
    s = r["sample"]
    print(f"Sampling ({s['preset']}: H {s['hidden']}, {s['layers']} layers, V {s['vocab']}; prompt "
          f"{s['prompt_tokens']} + span {s['span']}, batch 1, {s['threads']} threads). AR with KV cache: "
          f"{s['ar']['tokens_per_s']:.0f} tokens/s ({s['ar']['seconds']:.2f} s for {s['ar']['tokens']} tokens).\n")
    print("| steps | seconds | tokens/s | diffusion / AR |\n| --- | --- | --- | --- |")
    for d in s["diffusion"]:
        print(f"| {d['steps']} | {d['seconds']:.2f} | {d['tokens_per_s']:.0f} | {d['speedup_vs_ar']:.2f}x |")
    if "step" in s:
        st = s["step"]
        print(f"\nOne denoising step: forward {1e3 * st['forward_s']:.1f} ms ({st['forward_gflops']:.2f} GFLOP at "
              f"{st['forward_achieved_gflops']:.1f} GF/s), top-p token choice {1e3 * st['choose_top_p_s']:.1f} ms "
              f"(argmax {1e3 * st['choose_argmax_s']:.1f} ms), re-noising {1e3 * st['renoise_s']:.1f} ms.")
    print()


def data_section(r):
    d = r["data"]
    print(f"Data: loader {d['loader_tokens_per_s'] / 1e6:.1f} M tokens/s ({1e3 * d['loader_batch_s']:.3f} ms per "
          f"{d['batch']} x {d['seq_len']} batch); waiting on the prefetcher "
          f"{1e3 * d['prefetch_wait_per_batch_s']:.3f} ms per batch.")


def checkpoint_section(r):
    c = r["checkpoint"]
    for k in ("weights", "optimizer_state"):
        print(f"Checkpoint {k}: {c[k]['bytes'] / 1e6:.0f} MB, save {c[k]['save_gb_per_s']:.2f} GB/s, "
              f"load {c[k]['load_gb_per_s']:.2f} GB/s.")
    if "save_stall_in_steps" in c:
        print(f"Synchronous save ({c.get('trainer_case', '?')}): {c['save_stall_in_steps']:.3f} steps.")
    if "async" in c:
        a = c["async"]
        print(f"Asynchronous save ({a['snapshot_bytes'] / 1e6:.0f} MB snapshot, copied by the writer thread during "
              f"the next step): steps with a save in flight {a['step_s']:.3f} s against {a['plain_step_s']:.3f} s "
              f"for the plain steps interleaved with them "
              f"= {100 * c['async_stall_in_steps']:+.1f}%, of which {a['copy_wait_s']:.3f} s waiting for the copy "
              f"before the optimizer step; the writer finished {a['writer_after_step_s']:.3f} s after the step.")
    elif "async_snapshot_s" in c:  # reports before the deferred copy
        print(f"Asynchronous save: in-memory copy {c['async_snapshot_s']:.3f} s = {c['async_stall_in_steps']:.4f} "
              f"steps.")


def dist_section(r):
    dd = r["dist"]
    print()
    for name in ("one_process", "two_processes", "two_processes_overlapped"):
        if name not in dd:
            continue
        j = dd[name]
        print(f"Dist {name}: {j['world_size']} x {j['threads_per_process']} threads, {j['step_s']:.3f} s/step "
              f"(compute {j['compute_s']:.3f}, all-reduce wait {j['all_reduce_s']:.3f}, optimizer "
              f"{j['optimizer_s']:.3f}), {j['tokens_per_s']:.0f} tokens/s, gradients {j['gradient_bytes'] / 1e6:.0f} MB.")
    print(f"Efficiency {dd['efficiency']:.2f}, overlapped {dd.get('efficiency_overlapped', float('nan')):.2f}.")


SECTIONS = [("machine", machine_section), ("peak", peak_section), ("train", train_section),
            ("sample", sample_section), ("data", data_section), ("checkpoint", checkpoint_section),
            ("dist", dist_section)]


def main(path):
    """Every section the report holds: `tess bench all` has them all, a single
    subcommand (`tess bench sample --output F`) only its own."""
    r = json.load(open(path))
    for key, render in SECTIONS:
        if key in r:
            render(r)

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: scripts/bench_tables.py BENCH.json")
    main(sys.argv[1])
