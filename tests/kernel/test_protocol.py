"""Protocol behaviour beyond the official suite: signatures, malformed input, status
around every request, aborting after errors, interrupts and restart."""
import signal
import time

import pytest
from jupyter_client.session import Session

from conftest import TIMEOUT, collect, drain_iopub, execute, shell_reply


def no_reply(kc, seconds=2.0):
    """True if nothing at all arrives on shell within `seconds`."""
    try:
        kc.get_shell_msg(timeout=seconds)
    except Exception:
        return True
    return False


def test_kernel_info_has_rust_language_and_status(kernel):
    _, kc = kernel
    drain_iopub(kc)
    msg_id = kc.kernel_info()
    reply = shell_reply(kc, msg_id)
    info = reply["content"]["language_info"]
    assert info["name"] == "rust" and info["file_extension"] == ".rs"
    assert info["mimetype"] == "text/rust" and info["codemirror_mode"] == "rust"
    assert reply["content"]["protocol_version"] == "5.3"
    states = [m["content"]["execution_state"] for m in collect(kc, msg_id) if m["msg_type"] == "status"]
    assert states == ["busy", "idle"]
    assert kc.hb_channel.is_beating()


def test_badly_signed_and_malformed_messages_are_ignored(kernel):
    _, kc = kernel
    reply, _ = execute(kc, "%gim help")
    count = reply["content"]["execution_count"]
    sock = kc.shell_channel.socket
    content = {"code": "%gim demo", "silent": False, "store_history": True,
               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
    # Wrong key, then no signature at all.
    Session(key=b"not-the-key").send(sock, "execute_request", content=content)
    assert no_reply(kc), "kernel answered a message signed with the wrong key"
    Session(key=b"").send(sock, "execute_request", content=content)
    assert no_reply(kc), "kernel answered an unsigned message"
    # Garbage frames, a truncated message and a correctly signed message with invalid JSON.
    sock.send_multipart([b"garbage"])
    sock.send_multipart([b"<IDS|MSG>", b"sig", b"{}"])
    good = kc.session
    parts = [b"{not json", b"{}", b"{}", b"{}"]
    sock.send_multipart([b"<IDS|MSG>", good.sign(parts)] + parts)
    assert no_reply(kc, 1.0)
    # Still alive, and nothing was executed: the count moved by exactly one.
    reply, _ = execute(kc, "%gim help")
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["execution_count"] == count + 1


def test_unknown_message_type_does_not_crash(kernel):
    _, kc = kernel
    msg = kc.session.msg("no_such_request", content={})
    kc.shell_channel.send(msg)
    reply, _ = execute(kc, "%gim help")
    assert reply["content"]["status"] == "ok"


def test_magic_error_has_usage_in_traceback(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, "%gim frobnicate")
    assert reply["content"]["status"] == "error"
    err = [m for m in msgs if m["msg_type"] == "error"]
    assert len(err) == 1
    assert "frobnicate" in err[0]["content"]["evalue"]
    assert any("usage" in line for line in err[0]["content"]["traceback"])


def test_rich_result_is_one_bundle(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, "%gim demo")
    results = [m for m in msgs if m["msg_type"] in ("execute_result", "display_data")]
    assert len(results) == 1
    data = results[0]["content"]["data"]
    assert "text/plain" in data and "text/html" in data


def test_stop_on_error_aborts_queued_cells(kernel):
    _, kc = kernel
    ids = [kc.execute("%gim no-such-magic"), kc.execute("%gim help"), kc.execute("%gim help")]
    statuses = [shell_reply(kc, i)["content"]["status"] for i in ids]
    assert statuses == ["error", "aborted", "aborted"]
    reply, _ = execute(kc, "%gim help")
    assert reply["content"]["status"] == "ok"


def test_rust_state_is_kept_between_cells(kernel):
    _, kc = kernel
    reply, _ = execute(kc, "let answer = 40 + 2;")
    assert reply["content"]["status"] == "ok", reply["content"]
    reply, msgs = execute(kc, "%gim help\nanswer")
    assert reply["content"]["status"] == "ok", reply["content"]
    results = [m for m in msgs if m["msg_type"] == "execute_result"]
    assert results and results[-1]["content"]["data"]["text/plain"] == "42"


def test_rust_rich_content_is_one_display_bundle(kernel):
    _, kc = kernel
    code = 'println!("EVCXR_BEGIN_CONTENT text/html\\n<b>rich</b>\\nEVCXR_END_CONTENT");'
    reply, msgs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    shown = [m for m in msgs if m["msg_type"] in ("display_data", "execute_result")]
    assert [m["msg_type"] for m in shown] == ["display_data"]
    assert "<b>rich</b>" in shown[0]["content"]["data"]["text/html"]


def test_inspect_magic_line_replies(kernel):
    _, kc = kernel
    msg_id = kc.inspect("%gim help", 7)
    content = shell_reply(kc, msg_id)["content"]
    assert content["status"] == "ok"
    if content["found"]:
        assert "text/plain" in content["data"]


def test_rust_completion(kernel):
    _, kc = kernel
    code = "let s = String::new();\ns.push_"
    msg_id = kc.complete(code, len(code))
    content = shell_reply(kc, msg_id)["content"]
    assert any(m.startswith("push_str") for m in content["matches"]), content
    assert content["cursor_end"] == len(code)


def test_rust_panic_is_an_error(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, 'panic!("boom")')
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "Panic" and reply["content"]["evalue"] == "boom"
    reply, _ = execute(kc, "%gim help")
    assert reply["content"]["status"] == "ok"


def test_rust_compile_error_is_readable(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, "let y: u32 = \"no\";")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "CompilationError"
    assert "mismatched types" in reply["content"]["evalue"]


def interrupt_long_cell(km, kc, how):
    msg_id = kc.execute('println!("started"); std::thread::sleep(std::time::Duration::from_secs(60));')
    deadline = time.monotonic() + TIMEOUT
    started = False
    while time.monotonic() < deadline and not started:
        try:
            m = kc.get_iopub_msg(timeout=1)
        except Exception:
            continue
        started = (m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream"
                   and "started" in m["content"]["text"])
    assert started, "the long cell never started"
    t0 = time.monotonic()
    if how == "message":
        km.interrupt_kernel()  # kernelspec says interrupt_mode: message -> control channel
    else:
        km.signal_kernel(signal.SIGINT)
    reply = shell_reply(kc, msg_id, timeout=30)
    took = time.monotonic() - t0
    print(f"\ninterrupt ({how}) answered after {took:.2f} s")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert took < 2.0
    collect(kc, msg_id)
    reply, _ = execute(kc, "%gim help")
    assert reply["content"]["status"] == "ok"
    reply, msgs = execute(kc, "1 + 1")
    assert reply["content"]["status"] == "ok", reply["content"]


@pytest.mark.parametrize("how", ["message", "sigint"])
def test_interrupt_long_rust_cell(kernel, how):
    km, kc = kernel
    interrupt_long_cell(km, kc, how)


def test_sigint_while_idle_keeps_rust_state(kernel):
    km, kc = kernel
    reply, _ = execute(kc, "let kept = 7;")
    assert reply["content"]["status"] == "ok", reply["content"]
    km.signal_kernel(signal.SIGINT)  # the whole process group, as Jupyter does
    time.sleep(0.5)
    reply, msgs = execute(kc, "kept")
    assert reply["content"]["status"] == "ok", reply["content"]
    results = [m for m in msgs if m["msg_type"] == "execute_result"]
    assert results and results[-1]["content"]["data"]["text/plain"] == "7"


def test_restart(kernel):
    km, kc = kernel
    execute(kc, "let before_restart = 1;")
    t0 = time.monotonic()
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=TIMEOUT)
    print(f"\nrestart to ready: {time.monotonic() - t0:.2f} s")
    reply, _ = execute(kc, "%gim help")
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["execution_count"] == 1


def test_interrupt_long_magic_keeps_loaded_models(kernel):
    km, kc = kernel
    reply, _ = execute(kc, "%gim load toy-ioi\n%gim config ig_steps=5000000")
    assert reply["content"]["status"] == "ok", reply["content"]
    msg_id = kc.execute('%gim attribute "When Mary and John went to the store , John gave a drink to" '
                        "--method integrated-gradients")
    time.sleep(1.0)  # well into the 5M integrated-gradients steps
    t0 = time.monotonic()
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id, timeout=30)
    took = time.monotonic() - t0
    print(f"\ninterrupt of a long magic answered after {took:.2f} s")
    assert reply["content"]["status"] == "error"
    assert took < 2.0
    collect(kc, msg_id)
    # the magic really stopped (the next one does not wait for it) and the model is still hot
    t1 = time.monotonic()
    reply, msgs = execute(kc, "%gim models\n%gim config reset")
    assert reply["content"]["status"] == "ok", reply["content"]
    assert time.monotonic() - t1 < 5.0
    texts = [m["content"]["data"]["text/plain"] for m in msgs
             if m["msg_type"] in ("execute_result", "display_data") and "text/plain" in m["content"].get("data", {})]
    assert any("toy-ioi" in t for t in texts), texts
