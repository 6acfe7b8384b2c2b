//! `gim kernel`: serve Jupyter (`--connection-file F`) or install the kernelspec (`install`).

use std::path::PathBuf;

use crate::kernel::install::{self, Target};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Connection file written by the Jupyter client.
    #[arg(long, short = 'f')]
    pub connection_file: Option<PathBuf>,
    #[command(subcommand)]
    pub action: Option<Action>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Install the kernelspec so Jupyter lists "GIM (Rust)".
    Install(InstallArgs),
}

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// Per-user kernels folder (the default).
    #[arg(long, conflicts_with_all = ["sys_prefix", "prefix"])]
    pub user: bool,
    /// The active Python environment (`sys.prefix`).
    #[arg(long, conflicts_with = "prefix")]
    pub sys_prefix: bool,
    /// An explicit prefix: installs into PREFIX/share/jupyter/kernels.
    #[arg(long)]
    pub prefix: Option<PathBuf>,
    /// Kernelspec name.
    #[arg(long, default_value = "gim")]
    pub name: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match (args.action, args.connection_file) {
        (Some(Action::Install(a)), _) => {
            let target = match (a.sys_prefix, a.prefix) {
                (true, _) => Target::SysPrefix,
                (false, Some(p)) => Target::Prefix(p),
                (false, None) => Target::User,
            };
            let dir = install::install(&target, &a.name)?;
            println!("installed kernelspec `{}` in {}", a.name, dir.display());
            Ok(())
        }
        (None, Some(f)) => crate::kernel::run(&f),
        (None, None) => anyhow::bail!("give --connection-file F (Jupyter does) or `install`"),
    }
}
