"""No typed or pasted text can kill the kernel: a corpus of hostile strings (multi-byte spaces,
zero-width and bidi controls, NUL, combining marks, CJK, ZWJ emoji, very long lines, unbalanced
quotes) goes through complete and inspect at every cursor position, is_complete, history and
execute of magics. Every request must be answered, and the model loaded first must still be
there at the end. A fault-injection probe (GIM_FAULT_INJECTION=1) makes handlers panic for real,
to prove the panic guard turns a panic into an error reply."""
import json
import os
import pathlib
import time

import pytest
from jupyter_client.manager import start_new_kernel

from conftest import KERNEL_NAME, TIMEOUT, collect, drain_iopub, execute, shell_reply

CORPUS = json.loads((pathlib.Path(__file__).parent.parent / "data" / "hostile_corpus.json").read_text())
PROBE = "__gim_panic_probe__"
# One request's answer; generous for a loaded 2-core machine.
REPLY_S = 30


@pytest.fixture(scope="module")
def hostile_kernel():
    env = dict(os.environ, GIM_FAULT_INJECTION="1")
    km, kc = start_new_kernel(kernel_name=KERNEL_NAME, startup_timeout=TIMEOUT, env=env)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def lines_for(s):
    """The magic lines a user could type around one hostile string."""
    return [
        f"%gim {s}",
        f"%gim load {s}",
        f"%gim attribute \"{s}\" --target {s}",
        f"%gim compare {s} --methods gim,{s}",
        f"%gim help {s}",
        f"%gim circuit --data {s} --methods gim,{s}",
        f"%gim eval --data {s} --metric {s}",
        f"%%gim\n{s}\nmodels",
    ]


def cursor_positions(code):
    n = len(code)  # Jupyter cursors count code points, as Python's len does
    if n <= 400:
        return range(n + 1)
    step = max(1, n // 150)
    return sorted(set(range(0, n + 1, step)) | {n, n - 1, 1})


def request(kc, kind, **content):
    msg = kc.session.msg(kind, content)
    kc.shell_channel.send(msg)
    return shell_reply(kc, msg["header"]["msg_id"], REPLY_S)


def check_complete(code, r):
    c = r["content"]
    assert c["status"] == "ok", (code[:80], c)
    assert 0 <= c["cursor_start"] <= c["cursor_end"] <= len(code), (code[:80], c)
    assert all(isinstance(m, str) for m in c["matches"])


def test_hostile_text_never_kills_the_kernel(hostile_kernel):
    km, kc = hostile_kernel
    t0 = time.monotonic()
    reply, _ = execute(kc, "%gim load toy-ioi")
    assert reply["content"]["status"] == "ok", reply["content"]
    counts = {"complete": 0, "inspect": 0, "is_complete": 0, "execute": 0, "history": 0}
    for s in CORPUS:
        for code in lines_for(s):
            for pos in cursor_positions(code):
                check_complete(code, request(kc, "complete_request", code=code, cursor_pos=pos))
                counts["complete"] += 1
                r = request(kc, "inspect_request", code=code, cursor_pos=pos, detail_level=0)
                assert r["content"]["status"] == "ok", (code[:80], pos, r["content"])
                counts["inspect"] += 1
            r = request(kc, "is_complete_request", code=code)
            assert r["content"]["status"] in ("complete", "incomplete", "invalid", "unknown")
            counts["is_complete"] += 1
            reply, msgs = execute(kc, code, timeout=REPLY_S * 4)
            counts["execute"] += 1
            assert reply["content"]["status"] in ("ok", "error"), (code[:80], reply["content"])
            if reply["content"]["status"] == "error":
                # a clear one-line message, never a panic
                assert "\n" not in reply["content"]["evalue"], reply["content"]["evalue"]
                assert reply["content"]["ename"] != "MagicPanic", (code[:80], reply["content"])
                assert "internal error" not in reply["content"]["evalue"], reply["content"]
        r = request(kc, "history_request", hist_access_type="search", pattern=f"*{s[:50]}*",
                    output=False, raw=True, unique=True, n=5)
        assert r["content"]["status"] == "ok"
        counts["history"] += 1
    # Plain text around the hostile strings must not have unloaded anything.
    reply, msgs = execute(kc, "%gim models")
    text = "".join(m["content"]["data"].get("text/plain", "") for m in msgs
                   if m["msg_type"] == "execute_result")
    assert "toy-ioi" in text, text
    total = sum(counts.values())
    print(f"\nhostile corpus: {len(CORPUS)} strings, {total} requests {counts} "
          f"in {time.monotonic() - t0:.1f} s")
    assert total > 5000


def test_a_panicking_handler_becomes_an_error_reply(hostile_kernel):
    km, kc = hostile_kernel
    reply, _ = execute(kc, "%gim load toy-ioi --as kept")
    assert reply["content"]["status"] == "ok"
    code = f"%gim help {PROBE}"
    r = request(kc, "complete_request", code=code, cursor_pos=len(code))
    assert r["content"]["status"] == "error" and "fault injection" in r["content"]["evalue"]
    assert r["content"]["matches"] == []
    r = request(kc, "inspect_request", code=code, cursor_pos=3, detail_level=0)
    assert r["content"]["status"] == "error" and r["content"]["found"] is False
    r = request(kc, "is_complete_request", code=code)
    assert r["content"]["status"] == "unknown"
    drain_iopub(kc)
    reply, msgs = execute(kc, code)
    assert reply["content"]["status"] == "error"
    assert "fault injection" in reply["content"]["evalue"]
    assert [m for m in msgs if m["msg_type"] == "error"], "the error is shown in the cell"
    states = [m["content"]["execution_state"] for m in msgs if m["msg_type"] == "status"]
    assert states[-1] == "idle"
    # The kernel lives on with its models.
    reply, msgs = execute(kc, "%gim models")
    assert reply["content"]["status"] == "ok"
    text = "".join(m["content"]["data"].get("text/plain", "") for m in msgs
                   if m["msg_type"] == "execute_result")
    assert "kept" in text and "toy-ioi" in text, text
    assert km.is_alive()
