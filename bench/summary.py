#!/usr/bin/env python3
"""Print the Markdown summary of one bench/run.sh session.

Usage: bench/summary.py RESULTS.tsv

The TSV has the columns scenario, case, tool, run and seconds. For every
scenario and case this prints a table of each tool's median, minimum and
maximum, and the ratio of forge's median to that tool's median, followed
by the targets that the scenario's numbers decide.
"""

import csv
import statistics
import sys
from collections import OrderedDict


def load(path):
    """Return {scenario: {case: {tool: [seconds, ...]}}} in file order."""
    data = OrderedDict()
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            cases = data.setdefault(row["scenario"], OrderedDict())
            tools = cases.setdefault(row["case"], OrderedDict())
            tools.setdefault(row["tool"], []).append(float(row["seconds"]))
    return data


def median(cases, case, tool):
    """Return the median seconds of TOOL in CASE, or None without data."""
    times = cases.get(case, {}).get(tool)
    return statistics.median(times) if times else None


def table(scenario, case, tools):
    print(f"### {scenario}: {case}\n")
    print("| tool | runs | median s | min s | max s | forge / tool |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    forge = statistics.median(tools["forge"]) if "forge" in tools else None
    for tool, times in tools.items():
        mid = statistics.median(times)
        ratio = f"{forge / mid:.2f}" if forge is not None and mid > 0 else ""
        print(
            f"| {tool} | {len(times)} | {mid:.3f} | {min(times):.3f} | "
            f"{max(times):.3f} | {ratio} |"
        )
    print()


def verdict(text, met):
    print(f"- {text}: **{'met' if met else 'not met'}**")


def targets(scenario, cases):
    """Print the scenario's targets with the numbers that decide them."""
    if scenario == "nochange":
        forge, buildkit = median(cases, "rebuild", "forge"), median(cases, "rebuild", "buildkit")
        if forge is not None and buildkit is not None:
            verdict(
                f"forge no-change rebuild at most half of BuildKit's: "
                f"{forge:.3f} s vs {buildkit:.3f} s (ratio {forge / buildkit:.2f})",
                forge <= 0.5 * buildkit,
            )
    elif scenario == "export":
        case = "big.bin layer"
        gzip = median(cases, case, "gzip -6")
        for tool in ("forge", "forge --no-cache"):
            forge = median(cases, case, tool)
            if forge is not None and gzip is not None:
                verdict(
                    f"{tool} at least 1.8 times faster than single-threaded gzip -6: "
                    f"{forge:.3f} s vs {gzip:.3f} s ({gzip / forge:.2f} times)",
                    gzip / forge >= 1.8,
                )
    elif scenario == "snapshot":
        for tool in cases.get("busybox", {}):
            small, many = median(cases, "busybox", tool), median(cases, "busybox-many", tool)
            if small is None or many is None:
                continue
            extra = (many - small) * 1000
            if tool == "forge":
                verdict(
                    f"forge: the 100,000-file base adds under 50 ms per RUN: "
                    f"{many:.3f} s - {small:.3f} s = {extra:+.0f} ms",
                    extra < 50,
                )
            else:
                print(f"- {tool}: the 100,000-file base adds {extra:+.0f} ms per RUN ({many:.3f} s - {small:.3f} s)")
    elif scenario == "push":
        first, again = median(cases, "first", "forge"), median(cases, "again", "forge")
        if first is not None and again is not None:
            verdict(
                f"forge re-push under 5% of its first push: {again:.3f} s vs {first:.3f} s "
                f"({100 * again / first:.1f}%)",
                again < 0.05 * first,
            )
        buildah = median(cases, "first", "buildah")
        if first is not None and buildah is not None:
            verdict(
                f"forge first push at most buildah's: {first:.3f} s vs {buildah:.3f} s",
                first <= buildah,
            )
    print()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: summary.py RESULTS.tsv")
    for scenario, cases in load(sys.argv[1]).items():
        print(f"## {scenario}\n")
        for case, tools in cases.items():
            table(scenario, case, tools)
        targets(scenario, cases)


if __name__ == "__main__":
    main()
