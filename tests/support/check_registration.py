#!/usr/bin/env python3
"""Fails when a ctest entry could pass without testing anything.

Registered with ctest itself (tests/CMakeLists.txt). It checks, for every Catch
test executable that ctest runs:

1. every Catch test case is registered exactly once, under its own name,
   with exactly one of the suite's labels (its one label tag): a name that
   catch_discover_tests splits (a ';') or a case with two label tags or none
   would otherwise run nothing, run twice, or never run;
2. no test name holds a character that Catch's name filter reads as syntax
   (a backslash escapes, a leading or trailing '*' is a wildcard);
3. the executable fails when its filter matches no test case (the ctest
   command of a renamed test) and when a test case reaches no assertion
   (the hidden "[self-check]" case of tests/support/catch_main.cpp);
4. every entry reports TESS_SKIP as ctest's "Skipped": it carries the skip
   exit code and the variable that makes tess::test::skip exit with it
   (a skipped case that ran nothing must never count as passed).

Usage: check_registration.py BUILD_DIR SKIP_CODE LABEL...
"""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def catch_names(exe, spec):
    out = subprocess.run([exe, spec, "--list-test-names-only"], capture_output=True, text=True, check=False)
    return [line for line in out.stdout.splitlines() if line.strip()]


def exit_code(exe, spec):
    return subprocess.run([exe, spec], capture_output=True, check=False).returncode


def main():
    build_dir, skip_code, labels = sys.argv[1], sys.argv[2], sys.argv[3:]
    listing = subprocess.run(["ctest", "--show-only=json-v1"], cwd=build_dir, capture_output=True, text=True,
                             check=True)
    problems = []
    entries = {}  # executable -> {catch name: [labels of each ctest entry that runs it]}
    for test in json.loads(listing.stdout)["tests"]:
        command = test.get("command") or []
        exe = command[0] if command else ""
        prefix = exe.rsplit("/", 1)[-1] + ":"
        if not test["name"].startswith(prefix):
            continue  # not a Catch entry (this check itself): those are named "<executable>:<test case>"
        name = test["name"][len(prefix):]
        props = {p["name"]: p["value"] for p in test.get("properties", [])}
        entry_labels = list(props.get("LABELS", []))
        entries.setdefault(exe, {}).setdefault(name, []).append(entry_labels)
        if str(props.get("SKIP_RETURN_CODE")) != skip_code or \
                f"TESS_TEST_SKIP_CODE={skip_code}" not in props.get("ENVIRONMENT", []):
            problems.append(f"{test['name']}: no SKIP_RETURN_CODE {skip_code} with TESS_TEST_SKIP_CODE in its "
                            "environment: a TESS_SKIP would pass instead of being reported as skipped")

    if not entries:
        problems.append("ctest lists no Catch test entries")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # each listing starts LibTorch
        listings = {(exe, spec): pool.submit(catch_names, exe, spec) for exe in entries
                    for spec in ["~[.]"] + [f"[{label}]" for label in labels]}
        exits = {(exe, spec): pool.submit(exit_code, exe, spec) for exe in entries
                 for spec in ("no test case has this name", "[self-check]")}
    for exe, registered in sorted(entries.items()):
        by_label = {label: set(listings[exe, f"[{label}]"].result()) for label in labels}
        everything = set(listings[exe, "~[.]"].result())
        for name in sorted(everything):
            own = [label for label in labels if name in by_label[label]]
            where = f"{exe.rsplit('/', 1)[1]}: '{name}'"
            if len(own) != 1:
                problems.append(f"{where}: carries {len(own)} of the label tags {labels} ({own}); give it exactly one")
            if "\\" in name or name.startswith("*") or name.endswith("*"):
                problems.append(f"{where}: a backslash or an outer '*' in a name breaks Catch's name filter")
            runs = registered.get(name, [])
            if len(runs) != 1:
                problems.append(f"{where}: registered with ctest {len(runs)} time(s), expected once "
                                "(a ';' in the name splits it)")
            elif len(own) == 1 and runs[0] != own:
                problems.append(f"{where}: ctest labels {runs[0]}, its tag says {own}")
        for name in sorted(set(registered) - everything):
            problems.append(f"{exe.rsplit('/', 1)[1]}: ctest entry '{name}' is no test case of the executable")
        for spec, why in (("no test case has this name", "a filter matching no test case"),
                          ("[self-check]", "a test case without assertions")):
            if exits[exe, spec].result() == 0:
                problems.append(f"{exe}: {why} exits 0 (the warnings of tests/support/catch_main.cpp are off)")

    checked = sum(len(r) for r in entries.values())
    if problems:
        print("\n".join(problems))
        print(f"{len(problems)} problem(s) in {checked} registered test case(s)")
        return 1
    print(f"ok: {checked} test case(s) in {len(entries)} executable(s), each registered once with one label, "
          "and every executable fails on an unmatched name and on a test without assertions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
