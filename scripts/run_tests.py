#!/usr/bin/env python3
"""Run test programs, each in its own process with a timeout, and sum up.

Each program is a cmocka binary: its "[  PASSED  ] N test(s)." and
"[  FAILED  ] N test(s)" lines are counted. A program that crashes, times out
or exits non-zero without a cmocka summary counts as one failure. The last line
printed is "N passed, N failed" for the whole run; the exit status is 0 only
when nothing failed.
"""

import argparse
import os
import re
import subprocess
import sys
import time

PASSED = re.compile(r'^\[  PASSED  \] (\d+) test', re.M)
FAILED = re.compile(r'^\[  FAILED  \] (\d+) test', re.M)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--timeout', type=float, default=300)
    ap.add_argument('programs', nargs='+')
    args = ap.parse_args()

    total_pass = total_fail = 0
    for prog in args.programs:
        name = os.path.relpath(prog)
        start = time.monotonic()
        try:
            proc = subprocess.run([prog], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=args.timeout, cwd=os.path.dirname(prog))
            out = proc.stdout.decode('utf-8', 'replace')
            rc = proc.returncode
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b'').decode('utf-8', 'replace')
            out += '\n*** timed out after %.0f s\n' % args.timeout
            rc = -1
        took = time.monotonic() - start
        npass = sum(int(n) for n in PASSED.findall(out))
        nfail = sum(int(n) for n in FAILED.findall(out))
        if rc != 0 and nfail == 0:
            nfail = 1          # crashed, timed out or failed outside cmocka
        total_pass += npass
        total_fail += nfail
        status = 'ok' if rc == 0 and nfail == 0 else 'FAIL (exit %d)' % rc
        print('%-50s %3d passed %3d failed  %6.2fs  %s' % (name, npass, nfail, took, status))
        if status != 'ok' or os.environ.get('CHATD_TEST_VERBOSE'):
            sys.stdout.write(out if out.endswith('\n') else out + '\n')
        sys.stdout.flush()

    print('%d passed, %d failed' % (total_pass, total_fail))
    return 0 if total_fail == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
