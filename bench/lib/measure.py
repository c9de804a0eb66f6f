#!/usr/bin/env python3
"""Run one benchmarked command and append one sample to a TSV file.

The sample is: the key fields given with --key (tab-separated), the wall time
in seconds (monotonic clock around fork/exec/wait, so python's own start-up
is not counted), the peak RSS in KiB, and the exit status (124 on timeout).

Peak RSS is ru_maxrss from wait4() of the command (read by /usr/bin/time), which is the largest
resident set of any single process in its tree that was waited for. For a
tool that does its work in a daemon (docker's BuildKit lives in dockerd),
pass --daemon-pid for each daemon process: its peak (VmHWM) is reset through
/proc/PID/clear_refs before the command and read after it, and added to the
client's peak, so the figure is "client + daemons' peak during the command".

The command runs in its own session; on timeout the whole session gets
SIGKILL (a tool that ignores SIGTERM cannot hang the benchmark).
"""
import argparse
import os
import signal
import sys
import tempfile
import threading
import time

TIME = "/usr/bin/time"


def vm_hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_hwm(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5\n")
    except OSError:
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True, help="TSV file to append the sample to")
    p.add_argument("--key", required=True, help="tab-separated key fields")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--log", default=os.devnull, help="the command's stdout and stderr")
    p.add_argument("--daemon-pid", type=int, action="append", default=[])
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        p.error("no command")

    for pid in a.daemon_pid:
        reset_hwm(pid)
    log = open(a.log, "ab")
    fd, rss_file = tempfile.mkstemp(prefix="measure.", suffix=".rss")
    os.close(fd)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, 0)
        # Through /usr/bin/time: the peak of a process forked from python
        # would include python's own pages from before exec().
        try:
            os.execv(TIME, [TIME, "-f", "%M", "-o", rss_file, "--"] + cmd)
        except OSError as e:
            os.write(2, f"measure: cannot run '{cmd[0]}': {e.strerror}\n".encode())
        os._exit(127)

    timed_out = []

    def on_timeout():
        timed_out.append(True)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(a.timeout, on_timeout)
    timer.start()
    while True:
        try:
            _, status, ru = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    timer.cancel()
    wall = time.monotonic() - start
    # Whatever of the session outlives its leader (a stuck helper) goes too.
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    rc = 124 if timed_out else os.waitstatus_to_exitcode(status)
    if rc < 0:
        rc = 128 - rc
    try:
        with open(rss_file) as f:
            lines = f.read().split()
        child_rss = int(lines[-1])
    except (OSError, ValueError, IndexError):
        child_rss = ru.ru_maxrss
    try:
        os.unlink(rss_file)
    except OSError:
        pass
    rss = child_rss + sum(vm_hwm_kib(d) for d in a.daemon_pid)
    with open(a.out, "a") as f:
        f.write(f"{a.key}\t{wall:.4f}\t{rss}\t{rc}\n")
    if rc != 0:
        print(f"measure: {' '.join(cmd[:3])} ... exited {rc}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
