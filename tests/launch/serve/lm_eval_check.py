#!/usr/bin/env python3
"""lm-evaluation-harness against `tess serve`, checked against `tess eval`.

    python3 lm_eval_check.py --tess BIN --model DIR --out DIR [--data FILE] [--limit 12]

Writes a small held-out JSONL of {"prompt": Q, "answer": A} records into OUT
(the first --limit usable records of --data when given: chat "messages"
records whose last message is the assistant's answer, or "prompt"/"answer"
records; else a built-in set), runs lm-eval's `local-chat-completions` model
on the task lm_eval_task/tess_heldout.yaml (generate_until, no stop strings,
max_gen_toks 12, temperature 0, steps 6, exact_match; lm-eval sends seed 1234)
against a `tess serve` it starts, then
`tess eval --steps 6 --length 12 --top-p 0 --seed 1234 --seed-per-prompt` on
the same file, and checks:
  * primary: every lm-eval response equals tess eval's output for that record,
    text for text;
  * lm-eval's exact_match equals its own definition (response == answer,
    whole strings) over tess eval's outputs, and tess eval's exact_match
    equals its definition (both whitespace-trimmed, non-empty) over lm-eval's
    responses. The two numbers agree unless an output differs from its answer
    only by surrounding whitespace (reported when so).
lm-eval runs offline (HF_DATASETS_OFFLINE=1, HF_HUB_OFFLINE=1).
Exit 0 when everything holds, else "FAILED: ..." and exit 1.
"""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from serve_fixture import Server, check, check_args, failures_of  # noqa: E402

TASK = "tess_heldout"
SEED = 1234  # what lm-eval sends in every request (TemplateAPI seed default)

BUILTIN = [
    {"prompt": "Compute the sum of 12 and 30.", "answer": "42"},
    {"prompt": "Put the following numbers in ascending order: 83, 63, 34", "answer": "34, 63, 83"},
    {"prompt": "Write this list in reverse order: magnet, wizard, needle", "answer": "needle, wizard, magnet"},
    {"prompt": "How many letters are in the word 'garden'?", "answer": "6"},
    {"prompt": "Compute the sum of 8476 and 66.", "answer": "8542"},
    {"prompt": "Put the following numbers in ascending order: 5, 91, 17", "answer": "5, 17, 91"},
]


def log(msg):
    print(msg, flush=True)


def to_record(j):
    """{"prompt", "answer"} from a chat or prompt record; None when unusable."""
    if "messages" in j:
        msgs = j["messages"]
        if (len(msgs) == 2 and msgs[0].get("role") == "user" and msgs[1].get("role") == "assistant"):
            q, a = msgs[0].get("content"), msgs[1].get("content")
        elif len(msgs) == 1 and msgs[0].get("role") == "user" and isinstance(j.get("answer"), str):
            q, a = msgs[0].get("content"), j["answer"]
        else:
            return None  # system prompts / multi-turn: not a single lm-eval doc_to_text
    elif "prompt" in j and "choices" not in j:
        q, a = j.get("prompt"), j.get("answer", j.get("completion"))
    else:
        return None
    if not (isinstance(q, str) and q.strip() and isinstance(a, str) and a.strip()):
        return None
    r = {"prompt": q, "answer": a.strip()}  # tess eval strips the reference answer
    if isinstance(j.get("task"), str):
        r["task"] = j["task"]
    return r


def write_data(args):
    records = []
    if args.data:
        with open(args.data, encoding="utf-8") as f:
            for line in f:
                if line.strip() and len(records) < args.limit:
                    r = to_record(json.loads(line))
                    if r:
                        records.append(r)
        check(records, "no usable record in %s" % args.data)
    else:
        records = BUILTIN[:args.limit]
    path = os.path.join(args.out, "heldout.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path, records


def write_task(args, data_path):
    import yaml

    with open(os.path.join(HERE, "lm_eval_task", TASK + ".yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["dataset_kwargs"]["data_files"] = {"train": data_path}
    task_dir = os.path.join(args.out, "lm_eval_task")
    os.makedirs(task_dir, exist_ok=True)
    with open(os.path.join(task_dir, TASK + ".yaml"), "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    return task_dir, cfg


def run_lm_eval(server, task_dir):
    import lm_eval
    from lm_eval.tasks import TaskManager

    model_args = {
        "model": server.model_id,
        "base_url": server.url + "/v1/chat/completions",
        "num_concurrent": 1,
        "max_retries": 1,
        "tokenized_requests": False,
        "timeout": 120,
    }
    results = lm_eval.simple_evaluate(
        model="local-chat-completions",
        model_args=model_args,
        tasks=[TASK],
        task_manager=TaskManager(include_path=task_dir, include_defaults=False),
        apply_chat_template=True,
        log_samples=True,
        bootstrap_iters=0,
    )
    check(results is not None, "lm_eval.simple_evaluate returned nothing")
    return results


def run_tess_eval(args, data_path, cfg):
    g = cfg["generation_kwargs"]
    help_text = subprocess.run([args.tess, "eval", "--help"], capture_output=True, text=True).stdout
    check("--seed-per-prompt" in help_text,
          "`tess eval --help` lists no --seed-per-prompt (each prompt seeded like a server request)")
    samples = os.path.join(args.out, "tess_samples.jsonl")
    report = os.path.join(args.out, "report.json")
    cmd = [args.tess, "eval", "--model", args.model, "--data", data_path, "--metrics", "exact_match",
           "--extraction", "full", "--steps", str(g["steps"]), "--length", str(g["max_gen_toks"]),
           "--top-p", "0", "--seed", str(SEED), "--seed-per-prompt", "--samples", samples, "--output", report]
    log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, "tess eval exited %d:\n%s%s" % (p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
    with open(samples, encoding="utf-8") as f:
        outs = [json.loads(line) for line in f if line.strip()]
    with open(report, encoding="utf-8") as f:
        rep = json.load(f)
    return outs, rep


def report_exact_match(rep):
    """exact_match and its record count from a tess eval report."""
    reports = rep.get("reports", [rep])
    check(len(reports) == 1, "tess eval report holds %d reports, expected 1" % len(reports))
    m = reports[0].get("metrics", {})
    check("exact_match" in m, "tess eval report has no metrics.exact_match: %s" % json.dumps(rep)[:800])
    return m["exact_match"], m.get("exact_match_n")


def tess_em(output, answer):
    """tess eval's exact_match, extraction full: trimmed, non-empty, equal."""
    o, a = output.strip(" \t\r\n"), answer.strip(" \t\r\n")
    return o != "" and o == a


def main():
    def extra(ap):
        ap.add_argument("--data", help="held-out JSONL (chat messages or prompt/answer records)")
        ap.add_argument("--limit", type=int, default=12, help="records taken from --data (the first usable ones)")

    args = check_args(__doc__, extra)
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(args.out, "hf_datasets_cache"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.time()

    data_path, records = write_data(args)
    task_dir, cfg = write_task(args, data_path)
    log("held-out data: %s (%d records); task: %s" % (data_path, len(records), task_dir))

    with failures_of((RuntimeError, OSError, ValueError, KeyError), "lm-eval against tess serve"):
        with Server(args.tess, args.model) as s:
            log("server %s model %s" % (s.url, s.model_id))
            results = run_lm_eval(s, task_dir)
    res = results["results"][TASK]
    lm_em = res.get("exact_match,none")
    check(lm_em is not None, "lm-eval results have no exact_match,none: %s" % res)
    samples = sorted(results["samples"][TASK], key=lambda x: x["doc_id"])
    check(len(samples) == len(records), "lm-eval logged %d samples for %d records" % (len(samples), len(records)))
    lm_resps = [x["filtered_resps"][0] if isinstance(x["filtered_resps"], list) else x["filtered_resps"]
                for x in samples]
    with open(os.path.join(args.out, "lm_eval_samples.jsonl"), "w", encoding="utf-8") as f:
        for x, r in zip(samples, lm_resps):
            f.write(json.dumps({"doc": x["doc"], "response": r, "target": x["target"],
                                "exact_match": x.get("exact_match")}, ensure_ascii=False) + "\n")
    log("lm-eval: exact_match %.4f over %d samples" % (lm_em, len(samples)))

    outs, rep = run_tess_eval(args, data_path, cfg)
    check(len(outs) == len(records), "tess eval wrote %d samples for %d records" % (len(outs), len(records)))
    rep_em, rep_n = report_exact_match(rep)
    log("tess eval: exact_match %.4f (n=%s)" % (rep_em, rep_n))

    mismatches = []
    for i, (rec, x, lm_r, te) in enumerate(zip(records, samples, lm_resps, outs)):
        check(x["doc"]["prompt"] == rec["prompt"] and x["target"] == rec["answer"],
              "lm-eval sample %d is not record %d: %s" % (x["doc_id"], i, x["doc"]))
        check(te.get("prompt") in (None, rec["prompt"]), "tess eval sample %d is not record %d: %s" % (i, i, te))
        log("  %d %r: answer %r | lm-eval %r | tess eval %r" % (i, rec["prompt"][:40], rec["answer"], lm_r,
                                                              te["output"]))
        if lm_r != te["output"]:
            mismatches.append((i, rec["prompt"], lm_r, te["output"]))
    check(not mismatches, "lm-eval responses differ from tess eval outputs (record, prompt, lm-eval, tess): %s"
          % mismatches)

    n = len(records)
    lm_def_on_tess = sum(te["output"] == rec["answer"] for rec, te in zip(records, outs)) / n
    lm_def_on_lm = sum(r == rec["answer"] for rec, r in zip(records, lm_resps)) / n
    tess_def_on_lm = sum(tess_em(r, rec["answer"]) for rec, r in zip(records, lm_resps)) / n
    log("exact_match: lm-eval %.4f (its definition over its responses %.4f, over tess outputs %.4f); "
        "tess report %.4f (its definition over lm-eval responses %.4f)"
        % (lm_em, lm_def_on_lm, lm_def_on_tess, rep_em, tess_def_on_lm))
    check(rep_n in (None, n), "tess eval counted %s records for exact_match, expected %d" % (rep_n, n))
    check(abs(lm_em - lm_def_on_tess) < 1e-9,
          "lm-eval exact_match %.4f != lm-eval's definition over tess outputs %.4f" % (lm_em, lm_def_on_tess))
    check(abs(rep_em - tess_def_on_lm) < 1e-9,
          "tess eval exact_match %.4f != tess's definition over lm-eval responses %.4f" % (rep_em, tess_def_on_lm))
    if abs(lm_em - rep_em) < 1e-9:
        log("lm-eval exact_match == tess eval exact_match == %.4f" % lm_em)
    else:
        log("note: lm-eval exact_match %.4f != tess eval %.4f: lm-eval compares whole strings, tess trims "
            "whitespace (and never counts an empty output)" % (lm_em, rep_em))
    log("lm-eval check passed (%.1f s)" % (time.time() - t0))


if __name__ == "__main__":
    main()
