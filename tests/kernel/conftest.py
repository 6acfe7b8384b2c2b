"""Shared fixtures: a running `gim` kernel (installed with `gim kernel install --sys-prefix`)."""
import time

import pytest
from jupyter_client.manager import start_new_kernel

KERNEL_NAME = "gim"
# Generous: the machine is small and shared; the first Rust cell compiles.
TIMEOUT = 180


@pytest.fixture(scope="module")
def kernel():
    t0 = time.monotonic()
    km, kc = start_new_kernel(kernel_name=KERNEL_NAME, startup_timeout=TIMEOUT)
    print(f"\nkernel ready (kernel_info answered) after {time.monotonic() - t0:.2f} s")
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=False)


def drain_iopub(kc, timeout=0.2):
    msgs = []
    while True:
        try:
            msgs.append(kc.get_iopub_msg(timeout=timeout))
        except Exception:
            return msgs


def collect(kc, msg_id, timeout=TIMEOUT):
    """All iopub messages for msg_id up to its idle status."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=1)
        except Exception:
            continue
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        out.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            return out
    raise TimeoutError(f"no idle for {msg_id}")


def shell_reply(kc, msg_id, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = kc.get_shell_msg(timeout=1)
        except Exception:
            continue
        if r["parent_header"].get("msg_id") == msg_id:
            return r
    raise TimeoutError(f"no shell reply for {msg_id}")


def execute(kc, code, timeout=TIMEOUT, **kw):
    msg_id = kc.execute(code, **kw)
    reply = shell_reply(kc, msg_id, timeout)
    return reply, collect(kc, msg_id, timeout)
