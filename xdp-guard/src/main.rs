//! `xdp-guard`: parse the command line and dispatch; nothing else.
use std::process::ExitCode;

use clap::Parser as _;
use xdp_guard::{
    cli::{self, Cli, Command},
    daemon,
};

#[tokio::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => {
            let opts = daemon::RunOptions {
                config: args.config.clone(),
                iface: args.iface.clone(),
                mode: args.mode,
            };
            daemon::run(opts, None)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(|e| e.to_string())
        }
        Command::Detach {
            iface,
            config,
            state_dir,
        } => daemon::detach(iface, config, state_dir.as_deref())
            .map(|detached| {
                if detached {
                    println!("detached xdp-guard from {iface} and removed its pins");
                } else {
                    println!("nothing of xdp-guard is pinned for {iface}");
                }
                ExitCode::SUCCESS
            })
            .map_err(|e| e.to_string()),
        _ => cli::dispatch(cli).await.map_err(|e| e.to_string()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
