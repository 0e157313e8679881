"""SIGINT from a timer thread during a call, and how long the call took to
raise KeyboardInterrupt: shared by tests/test_interrupt.py (in a fresh
process, a script that imports this file) and benchmarks/interrupt_latency.py."""

import os
import signal
import threading
import time


def interrupted(call, delay, started=None):
    """Run call() and send this process SIGINT `delay` s after `started`
    (an Event; the call's start when None) is set: (got a
    KeyboardInterrupt, seconds from the signal to the exception)."""
    if started is None:
        started = threading.Event()
        started.set()
    done = threading.Event()
    sent = []

    def send():
        if started.wait(120) and not done.wait(delay):
            sent.append(time.perf_counter())
            os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=send)
    timer.start()
    try:
        call()
    except KeyboardInterrupt:
        caught = time.perf_counter()
        done.set()
        timer.join()
        return bool(sent), caught - sent[0] if sent else None
    try:  # the call ended first: a signal sent meanwhile lands here
        done.set()
        timer.join()
        time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    return False, None
