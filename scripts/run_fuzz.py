#!/usr/bin/env python3
"""Run each libFuzzer target for a bounded time, starting from its seed corpus.

Arguments are TARGET=SEED_DIR pairs. Each target gets a working corpus under
--workdir (seeded from SEED_DIR) so the source tree is never written to. A crash,
leak or sanitizer report fails the run; the reproducer stays in the workdir.
Prints one line per target and "N passed, N failed" at the end.
"""

import argparse
import os
import shutil
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=int, default=20)
    ap.add_argument('--workdir', required=True)
    ap.add_argument('targets', nargs='+')
    args = ap.parse_args()

    passed = failed = 0
    for spec in args.targets:
        prog, _, seeds = spec.partition('=')
        name = os.path.basename(prog)
        work = os.path.join(args.workdir, name)
        os.makedirs(work, exist_ok=True)
        if seeds and os.path.isdir(seeds):
            for f in os.listdir(seeds):
                shutil.copy(os.path.join(seeds, f), work)
        cmd = [prog, '-max_total_time=%d' % args.seconds, '-timeout=10',
               '-rss_limit_mb=2048', '-print_final_stats=1',
               '-artifact_prefix=%s/' % args.workdir, work]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=args.seconds + 120)
        out = proc.stdout.decode('utf-8', 'replace')
        runs = [l for l in out.splitlines() if l.startswith('stat::number_of_executed_units')]
        execs = runs[-1].split(':')[-1].strip() if runs else '?'
        if proc.returncode == 0:
            passed += 1
            print('fuzz %-30s ok    %s executions in %d s' % (name, execs, args.seconds))
        else:
            failed += 1
            print('fuzz %-30s FAIL  (exit %d)' % (name, proc.returncode))
            print('\n'.join(out.splitlines()[-60:]))
        sys.stdout.flush()
    print('%d passed, %d failed' % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
