fn main() -> std::process::ExitCode {
    gim::cli::main()
}
