//! Command line of pkic: parses arguments, dispatches to the pipeline, and maps the
//! result to an exit code (0 ok, 1 check failed, 2 invalid input, 3 I/O error, 4 plan
//! found changes, 5 certificates await signature).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use pkic::pipeline::{self, BuildOptions, Failure, Format};
use pkic::{Reporter, Verbosity};

/// Compile a declarative pki.toml into a Kubernetes cluster PKI: keys, certificates,
/// CA bundles, kubeconfigs and component flag files.
#[derive(Debug, Parser)]
#[command(
    name = "pkic",
    version,
    after_help = "Exit codes: 0 success; 1 verification failed or outputs differ from --check; \
                  2 invalid manifest or command line; 3 reading or writing files failed; \
                  4 `pkic plan` found changes to make; 5 `pkic build` wrote CSRs and waits for \
                  their signed certificates."
)]
struct Cli {
    /// Print only errors; `plan`, `graph` and `check` still print their results.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Also print every file written (`build`) or the objects each object
    /// depends on (`graph`). `plan` rejects it.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build every key, certificate, bundle, kubeconfig and flag file of a manifest.
    Build(BuildArgs),
    /// Show what `pkic build` would create, reissue, renew or keep, and the rollout
    /// runbook, without writing anything. Exits 4 when something would change.
    Plan(PlanArgs),
    /// Adopt an existing PKI directory: write a manifest that describes it and copy its
    /// files into the output directory, so that the next build keeps them unchanged.
    Init(InitArgs),
    /// Print the objects of a manifest in dependency order, issuers first.
    Graph(ManifestArgs),
    /// Check an existing PKI tree against Kubernetes' trust rules: a kubeadm
    /// /etc/kubernetes, its pki directory, a pkic output directory, or any tree that
    /// --map describes. Exits 1 when it finds an error.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Directory to adopt: a kubeadm /etc/kubernetes, its pki directory, or a pkic
    /// output directory. It is only read.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// Manifest to write; init fails if it exists.
    #[arg(short, long, default_value = "pki.toml")]
    manifest: PathBuf,
    /// Output directory to copy the adopted files into; it must be missing or empty.
    #[arg(short, long, default_value = "out")]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Directory to check.
    dir: PathBuf,
    /// TOML file that maps component flags and roles to files, and gives cluster facts,
    /// for a layout that is neither kubeadm's nor pkic's.
    #[arg(long, value_name = "FILE")]
    map: Option<PathBuf>,
    /// Manifest whose declared outputs must all be present in DIR and match it.
    #[arg(short, long)]
    manifest: Option<PathBuf>,
    /// Value of a ${NAME} variable in the manifest; may repeat.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    set: Vec<(String, String)>,
    /// Service CIDR of the cluster, two comma-separated for dual-stack; overrides the tree.
    #[arg(long, value_name = "CIDR")]
    service_cidr: Option<String>,
    /// Cluster DNS domain; overrides the tree.
    #[arg(long, value_name = "DOMAIN")]
    dns_domain: Option<String>,
    /// The apiserver's advertise address; overrides the tree.
    #[arg(long, value_name = "IP")]
    advertise_address: Option<std::net::IpAddr>,
    /// Also require every certificate to be valid at this RFC 3339 time, such as
    /// 2027-01-01T00:00:00Z.
    #[arg(long, value_name = "TIME", value_parser = pkic::check::parse_time)]
    at: Option<time::OffsetDateTime>,
    /// Warn about certificates that expire within this duration, such as 30d or 12h.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30d",
        value_parser = pkic::check::parse_within
    )]
    warn_within: std::time::Duration,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Fail on warnings too.
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    manifest: ManifestArgs,
    /// Output directory of the build to compare with.
    #[arg(short, long, default_value = "out")]
    out: PathBuf,
    /// Directory of template overrides, as for `pkic build`.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Plan as if the build ran at this time (RFC 3339, such as 2027-06-01T00:00:00Z),
    /// to see what it would renew then.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<time::OffsetDateTime>,
}

fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))
}

#[derive(Debug, Args)]
struct ManifestArgs {
    /// Manifest to read.
    #[arg(short, long, default_value = "pki.toml")]
    manifest: PathBuf,
    /// Value of a ${NAME} variable in the manifest; may repeat. Overrides the environment.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    set: Vec<(String, String)>,
}

#[derive(Debug, Args)]
struct BuildArgs {
    #[command(flatten)]
    manifest: ManifestArgs,
    /// Directory to write the outputs under.
    #[arg(short, long, default_value = "out")]
    out: PathBuf,
    /// Directory of template overrides; files named like the built-in templates replace them.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Compare the public outputs with DIR, print a unified diff, write nothing, and exit 1
    /// when they differ.
    #[arg(long, value_name = "DIR", conflicts_with = "update_golden")]
    check: Option<PathBuf>,
    /// Replace the contents of DIR with the public outputs (the golden files), and write
    /// nothing else.
    #[arg(long, value_name = "DIR")]
    update_golden: Option<PathBuf>,
}

fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.verbose && matches!(cli.command, Command::Plan(_)) {
        Cli::command()
            .error(
                ErrorKind::ArgumentConflict,
                "`pkic plan` has no `-v`: it always lists every key and certificate, kept \
                 ones too; run it without `-v`",
            )
            .exit();
    }
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let reporter = Reporter { verbosity };
    let result = match cli.command {
        Command::Build(args) => {
            let options = BuildOptions {
                manifest: args.manifest.manifest,
                out: args.out,
                set: args.manifest.set.into_iter().collect::<BTreeMap<_, _>>(),
                templates: args.templates,
                check: args.check,
                update_golden: args.update_golden,
            };
            pipeline::build(&options, &reporter)
        }
        Command::Plan(args) => {
            let options = BuildOptions {
                manifest: args.manifest.manifest,
                out: args.out,
                set: args.manifest.set.into_iter().collect::<BTreeMap<_, _>>(),
                templates: args.templates,
                check: None,
                update_golden: None,
            };
            match pipeline::plan(&options, args.format, args.at, &reporter) {
                Ok(true) => return ExitCode::from(4),
                Ok(false) => Ok(()),
                Err(failure) => Err(failure),
            }
        }
        Command::Init(args) => {
            let options = pkic::adopt::InitOptions {
                from: args.from,
                manifest: args.manifest,
                out: args.out,
            };
            pkic::adopt::run(&options, &reporter)
        }
        Command::Graph(args) => graph(&args, &reporter),
        Command::Check(args) => {
            let options = pkic::check::CheckOptions {
                dir: args.dir,
                map: args.map,
                overrides: pkic::check::Overrides {
                    service_cidr: args.service_cidr,
                    dns_domain: args.dns_domain,
                    advertise_address: args.advertise_address,
                },
                at: args.at,
                warn_within: args.warn_within,
                format: args.format,
                strict: args.strict,
                manifest: args.manifest,
                set: args.set.into_iter().collect(),
            };
            pkic::check::run(&options, &reporter)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.message().trim_end());
            ExitCode::from(failure.exit_code() as u8)
        }
    }
}

fn graph(args: &ManifestArgs, reporter: &Reporter) -> Result<(), Failure> {
    let set = args.set.iter().cloned().collect();
    let loaded = pipeline::load(&args.manifest, &set, reporter)?;
    if reporter.verbosity < Verbosity::Verbose {
        for key in &loaded.order {
            pkic::print_out(&format!("{key}\n"));
        }
        return Ok(());
    }
    // With `-v`, each line also names the objects the object depends on.
    let graph = pkic::graph::Graph::from_model(&loaded.model);
    for key in &loaded.order {
        let dependencies = graph.dependencies(key);
        if dependencies.is_empty() {
            pkic::print_out(&format!("{key}\n"));
        } else {
            pkic::print_out(&format!("{key} <- {}\n", dependencies.join(", ")));
        }
    }
    Ok(())
}
