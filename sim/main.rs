fn main() -> std::process::ExitCode {
    trainsim::cli::main()
}
