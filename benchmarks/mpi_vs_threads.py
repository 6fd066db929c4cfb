"""The cpu preset's step on two cores: 1 process with 2 shards, in threads and in a worker process
(the default), against 2 ranks x 1 thread (plain, and ZeRO-1), in interleaved rounds so that the
machine's drift hits all four alike. Each run is a
`tinygpt bench` command; beside its result goes the CPU time that processes other than these
took meanwhile (another user's work on a shared machine shows there). One JSON line per run.

    python3 benchmarks/mpi_vs_threads.py --rounds 12 --iters 50 > runs.jsonl
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = [sys.executable, "-m", "tinygrad_gpt", "bench", "--preset", "cpu", "--json"]
RUNS = {  # name: (command, environment)
    "1 process x 2 threads": (BENCH, {"TINYGPT_CPU_THREADS": "2", "TINYGPT_CPU_WORKERS": "threads"}),
    "1 process, 2 shards, 1 in a worker process": (
        BENCH,
        {"TINYGPT_CPU_THREADS": "2", "TINYGPT_CPU_WORKERS": "processes"},
    ),
    "2 ranks x 1 thread": (["mpiexec", "-n", "2", *BENCH], {"TINYGPT_CPU_THREADS": "1"}),
    "2 ranks x 1 thread, ZeRO-1": (["mpiexec", "-n", "2", *BENCH, "--zero", "1"], {"TINYGPT_CPU_THREADS": "1"}),
}


def cpu_seconds():
    """{pid: (parent pid, user + system CPU seconds)} of every process this user can read."""
    table = {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
        except (OSError, ValueError, IndexError):  # not a process, or gone meanwhile
            continue
    return table


def ours(pid, table):
    while pid in table and pid > 1:
        if pid == os.getpid():
            return True
        pid = table[pid][0]
    return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()
    for round_ in range(args.rounds):
        for name, (command, variables) in RUNS.items():
            before = cpu_seconds()
            env = {**os.environ, **variables}
            run = subprocess.run([*command, "--iters", str(args.iters)], capture_output=True, text=True, env=env)
            after = cpu_seconds()
            others = sum(after[p][1] - before[p][1] for p in after.keys() & before.keys() if not ours(p, after))
            result = json.loads(run.stdout.splitlines()[-1])
            print(json.dumps({"round": round_, "run": name, "others_cpu_s": round(others, 2), "result": result}))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
