//! `crtools-gen man|bash|zsh`: prints the crtools(1) manual page or a shell
//! completion script, generated from the command line definitions (used by
//! `make install`).
#[allow(dead_code)]
#[path = "../docs.rs"]
mod docs;
#[allow(dead_code)]
#[path = "../opts.rs"]
mod opts;

fn main() -> std::process::ExitCode {
    let cmd = opts::command();
    let out = match std::env::args().nth(1).as_deref() {
        Some("man") => docs::man(&cmd),
        Some("bash") => docs::bash(&cmd),
        Some("zsh") => docs::zsh(&cmd),
        _ => {
            eprintln!("usage: crtools-gen man|bash|zsh");
            return std::process::ExitCode::from(2);
        }
    };
    print!("{out}");
    std::process::ExitCode::SUCCESS
}
