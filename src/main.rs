fn main() -> std::process::ExitCode {
    gim::tune_allocator();
    gim::tune_threads();
    gim::model::gemm::take_over_threads();
    // evcxr re-executes this binary as its code runner and rustc wrapper; this call turns
    // such a process into that role and never returns.
    gim::kernel::rust::runtime_hook();
    gim::cli::main()
}
