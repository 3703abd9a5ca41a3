#!/usr/bin/env python3
"""Interleaved A/B timing of two (or more) `uniformer bench ... --json` commands.

    python3 tasks/bench/ab.py ROUNDS 'CMD_A' 'CMD_B' [...]

Each round runs every command once (the order reversed every other round, so neither side always
runs first), reads `median_ms` from the last line of its output, and at the end prints each
command's median over rounds with the per-round values; with two commands also the per-round ratio
A/B and its median (above 1: B is faster). On this project's shared 2-core machines the host's speed
drifts by 10–30 % within minutes, so only such interleaved ratios compare builds — an A/A run of one
binary gave a median ratio of 0.95–1.01 over 8 rounds. Example (an older build in a worktree):

    git worktree add /tmp/ab-old <commit> && swift build -c release --package-path /tmp/ab-old
    python3 tasks/bench/ab.py 10 \\
      '/tmp/ab-old/.build/release/uniformer bench --model configs/uniformer-s.json --size 512x512 --runs 5 --warmup 1 --threads 2 --json' \\
      '.build/release/uniformer bench --model configs/uniformer-s.json --size 512x512 --runs 5 --warmup 1 --threads 2 --json'
"""
import json
import statistics
import subprocess
import sys


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rounds, cmds = int(sys.argv[1]), sys.argv[2:]
    results = [[] for _ in cmds]
    for r in range(rounds):
        order = range(len(cmds)) if r % 2 == 0 else reversed(range(len(cmds)))
        for i in order:
            run = subprocess.run(cmds[i], shell=True, capture_output=True, text=True)
            lines = run.stdout.strip().splitlines()
            if run.returncode != 0 or not lines:
                sys.exit(f"ab.py: command {i + 1} failed (exit {run.returncode}): {run.stderr.strip()[:500]}")
            results[i].append(json.loads(lines[-1])["median_ms"])
    for cmd, times in zip(cmds, results):
        print(f"{statistics.median(times):8.1f} ms  {' '.join(f'{t:.0f}' for t in times)}  {cmd}")
    if len(cmds) == 2:
        ratios = [a / b for a, b in zip(*results)]
        print(f"A/B per round: {' '.join(f'{x:.3f}' for x in ratios)}  median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
