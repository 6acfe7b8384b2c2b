"""The official jupyter_kernel_test suite against the installed `gim` kernel."""
import jupyter_kernel_test as jkt
from jupyter_client.manager import start_new_kernel

from conftest import KERNEL_NAME, TIMEOUT


class GimKernelTests(jkt.KernelTests):
    kernel_name = KERNEL_NAME
    language_name = "rust"
    file_extension = ".rs"

    code_hello_world = 'println!("hello, world");'
    code_stderr = 'eprintln!("oops");'
    code_generate_error = "%gim no-such-magic"

    # Magic results are execute_result bundles; `%gim demo` carries SVG, PNG and HTML in one.
    code_execute_result = [
        {"code": "%gim demo", "mime": "text/html"},
        {"code": "%gim demo", "mime": "image/svg+xml"},
        {"code": "%gim demo", "mime": "image/png"},
        {"code": "%gim help"},
    ]
    code_display_data = [{"code": "%gim demo\n%gim help", "mime": "text/html"}]

    completion_samples = [{"text": "%gim att", "matches": {"attribute"}}, {"text": "%gim he", "matches": {"help", "heads"}}]
    code_inspect_sample = "%gim attribute"
    complete_code_samples = ["let x = 1;", "%gim demo", "%%gim\nhelp\n"]
    incomplete_code_samples = ["fn f() {", 'let s = "abc']
    invalid_code_samples = ["let x = 1; }"]

    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "%gim de?o"

    @classmethod
    def setUpClass(cls) -> None:
        cls.km, cls.kc = start_new_kernel(kernel_name=cls.kernel_name, startup_timeout=TIMEOUT)

    def execute_helper(self, code, timeout=TIMEOUT, **kw):
        # The suite's 15 s default is too short for a first Rust compile on a loaded machine.
        return super().execute_helper(code, timeout=timeout, **kw)
