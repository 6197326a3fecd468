fn main() -> std::process::ExitCode {
    calm::cli::main()
}
