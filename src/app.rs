//! The program behind `main`: from arguments to an exit code. Kept in the library so the pro
//! binary and tests share it: `run_program` parses, prints `--version`, sets the log level,
//! runs, and turns a `RunError` into its exit code for both binaries.

use std::path::Path;
use std::sync::Arc;

use crate::cli::{self, Args, UsageError};
use crate::client::{self, ClientConfig, ClientOutput, Format, OutputOptions};
use crate::handshake::client::Credentials;
use crate::handshake::server::{NoAuth, SingleUser};
use crate::proto::{Direction, Payload, Protocol};
use crate::report::csv::CsvSink;
use crate::report::svg::SvgSink;
use crate::report::syslog::Syslog;
use crate::server::output;
use crate::server::recorder::Recorder;
use crate::server::{Server, ServerConfig};
use crate::{log_error, sys};

/// Exit code: the test ran as asked.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code: the test failed or the peer ended it.
pub(crate) const EXIT_FAILED: u8 = 1;
/// Exit code: the command line is wrong.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code: the server rejected our credentials.
pub(crate) const EXIT_AUTH: u8 = 3;

/// Why a run stopped without an exit code of its own; the error is printed on stderr.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The command line cannot run: exit 2.
    Usage(UsageError),
    /// Something failed once running (a socket, the database, a thread): exit 1.
    Failed(Box<dyn std::error::Error>),
}

impl RunError {
    /// A failure (exit 1) with this explanation.
    pub(crate) fn failed(e: impl Into<Box<dyn std::error::Error>>) -> RunError {
        RunError::Failed(e.into())
    }

    /// The exit code of this stop.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            RunError::Usage(_) => EXIT_USAGE,
            RunError::Failed(_) => EXIT_FAILED,
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Usage(e) => e.fmt(f),
            RunError::Failed(e) => e.fmt(f),
        }
    }
}

impl From<UsageError> for RunError {
    fn from(e: UsageError) -> RunError {
        RunError::Usage(e)
    }
}

/// A parsed command line of one of the binaries, as [`run_program`] drives it.
pub(crate) trait Program: argh::TopLevelCommand {
    /// The version line, when the command line asks for it (nothing else runs then).
    fn version(&self) -> Option<String>;
    /// The log level `-q` and `-v` ask for.
    fn log_level(&self) -> i8;
    /// Runs it: the exit code, or why it stopped.
    fn run(&self) -> Result<u8, RunError>;
}

/// Parses `rest` (the words after the program name) as `P` and runs it; every outcome becomes
/// an exit code here, the same way for both binaries.
pub(crate) fn run_program<P: Program>(name: &str, rest: &[&str]) -> u8 {
    let parsed: P = match parse_args(name, rest) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Some(line) = parsed.version() {
        println!("{line}");
        return EXIT_OK;
    }
    crate::log::set_level(parsed.log_level());
    match parsed.run() {
        Ok(code) => code,
        Err(e) => {
            log_error!("{e}");
            e.exit_code()
        }
    }
}

/// How long a stopping server waits for its last output lines to reach stdout.
const OUTPUT_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Version line: crate version and enabled features.
pub(crate) fn version_line() -> String {
    let features: &[&str] = &[
        #[cfg(feature = "pro")]
        "pro",
    ];
    let features = if features.is_empty() {
        "default".to_string()
    } else {
        features.join(",")
    };
    format!(
        "btest {} (features: {features}; auth: md5, ecsrp5)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Options that take a value: the word after them is that value, never a flag.
const VALUE_OPTIONS: &[&str] = &[
    "-c",
    "--client",
    "-b",
    "--bandwidth",
    "-P",
    "--port",
    "--listen",
    "--listen6",
    "-a",
    "--authuser",
    "-p",
    "--authpass",
    "-d",
    "--duration",
    "--csv",
    "--svg",
    "--syslog",
    "--connections",
    "--local-tx-speed",
    "--remote-tx-speed",
    "--udp-size",
    "--udp-port-base",
    "--max-sessions",
];

/// Spells `-vv` as `-v -v`: users type the combined form (the man page documents `-vv`), but argh
/// takes one short flag per word. The value of an option (a password `-vv`) is left alone.
fn expand_verbose(args: &[String]) -> Vec<&str> {
    let mut out = Vec::with_capacity(args.len());
    let mut value_next = false;
    for arg in args {
        let a = arg.as_str();
        let repeated_v = a.len() > 2 && a.starts_with('-') && a[1..].bytes().all(|b| b == b'v');
        if repeated_v && !value_next {
            out.extend(std::iter::repeat_n("-v", a.len() - 1));
        } else {
            out.push(a);
        }
        value_next = !value_next && VALUE_OPTIONS.contains(&a);
    }
    out
}

/// Parses `rest` (the arguments after the program name) into `T`. `--help` prints and gives
/// `Err(EXIT_OK)`; a parse error is explained on stderr and gives `Err(EXIT_USAGE)`.
pub(crate) fn parse_args<T: argh::TopLevelCommand>(name: &str, rest: &[&str]) -> Result<T, u8> {
    T::from_args(&[name], rest).map_err(|early| {
        if early.status.is_ok() {
            print!("{}", early.output);
            EXIT_OK
        } else {
            eprint!("{}", early.output);
            eprintln!("Run '{name} --help' for usage.");
            EXIT_USAGE
        }
    })
}

/// Runs the program with `args` (including the program name) and returns the exit code.
pub fn main_with_args(args: &[String]) -> u8 {
    let name = args.first().map_or("btest", |s| s.as_str());
    let rest = expand_verbose(args.get(1..).unwrap_or_default());
    run_program::<Args>(name, &rest)
}

impl Program for Args {
    fn version(&self) -> Option<String> {
        self.version.then(version_line)
    }

    fn log_level(&self) -> i8 {
        crate::log::chosen(self.quiet.then_some(crate::log::SESSION), self.verbose)
    }

    fn run(&self) -> Result<u8, RunError> {
        match (self.server, &self.client) {
            (true, _) => run_server(self),
            (false, Some(host)) => run_client(self, host),
            (false, None) => Err(RunError::Usage(UsageError(
                "give -s to run a server or -c HOST to run a client (see --help)".into(),
            ))),
        }
    }
}

/// Opens `--csv` at start-up, so an unwritable path is a usage error before any test runs
/// rather than a lost result at its end.
fn open_csv(args: &Args) -> Result<Option<CsvSink>, UsageError> {
    args.csv
        .as_deref()
        .map(|p| CsvSink::open(Path::new(p)).map_err(|e| UsageError(e.to_string())))
        .transpose()
}

/// Resolves `--syslog` once, at start-up.
fn open_syslog(args: &Args) -> Result<Option<Syslog>, UsageError> {
    args.syslog
        .as_deref()
        .map(|t| {
            let s = Syslog::connect(t).map_err(|e| UsageError(e.to_string()))?;
            crate::log!(1, "syslog events go to {}", s.target());
            Ok(s)
        })
        .transpose()
}

/// Validates the server's command line into its configuration: the single user (if any),
/// and `--csv` and `--syslog` opened now so a bad path or host stops the start, recording in
/// front of the admission.
fn server_setup(args: &Args) -> Result<(ServerConfig, Option<Arc<Recorder>>), UsageError> {
    let mut cfg = cli::server_args(args)?;
    if args.json {
        return Err(UsageError(
            "--json is a client option; the server writes --json-lines, and records with --csv \
             and --syslog"
                .into(),
        ));
    }
    if args.svg.is_some() {
        return Err(UsageError("--svg is a client option".into()));
    }
    let csv = open_csv(args)?;
    let syslog = open_syslog(args)?;
    cfg.auth = match cli::credentials(args)? {
        Some((user, pass)) if args.ecsrp5 => Arc::new(SingleUser::ecsrp5(&user, &pass)),
        Some((user, pass)) => Arc::new(SingleUser::md5(&user, &pass)),
        None => Arc::new(NoAuth),
    };
    let recorder = (csv.is_some() || syslog.is_some())
        .then(|| Arc::new(Recorder::new(cfg.admission.clone(), csv, syslog, args.port)));
    if let Some(r) = &recorder {
        cfg.admission = r.clone();
    }
    Ok((cfg, recorder))
}

/// Puts the per-session lines (text, or `--json-lines`) in front of the admission, unless
/// `-q` leaves nothing to show.
fn server_output(
    args: &Args,
    cfg: &mut ServerConfig,
) -> Result<Option<Arc<output::ServerOutput>>, RunError> {
    let shown = output::Options {
        format: if args.json_lines {
            output::Format::JsonLines
        } else {
            output::Format::Text
        },
        intervals: !args.quiet,
    };
    if shown.is_silent() {
        return Ok(None);
    }
    let out = output::ServerOutput::stdout(shown)
        .map_err(|e| RunError::failed(format!("cannot start the output thread: {e}")))?;
    cfg.admission = Arc::new(output::Announcer::new(cfg.admission.clone(), out.clone()));
    Ok(Some(out))
}

fn run_server(args: &Args) -> Result<u8, RunError> {
    let (mut cfg, recorder) = server_setup(args)?;
    let out = server_output(args, &mut cfg)?;
    let stop = sys::signal::install()
        .map_err(|e| RunError::failed(format!("cannot install signal handlers: {e}")))?;
    let server = Server::bind(cfg).map_err(RunError::failed)?;
    if let (Some(r), Some(addr)) = (&recorder, server.local_addrs().first()) {
        r.set_port(addr.port());
    }
    let served = server.serve(&stop);
    if let Some(out) = out {
        out.flush(OUTPUT_FLUSH_LIMIT);
    }
    served.map_err(RunError::failed)?;
    Ok(EXIT_OK)
}

fn client_config(args: &Args, host: &str) -> Result<ClientConfig, UsageError> {
    let direction = Direction::from_client(args.transmit, args.receive).ok_or_else(|| {
        UsageError("choose a direction: -t (transmit), -r (receive) or both".into())
    })?;
    let rates = cli::rates(args);
    if args.listen.is_some() || args.listen6.is_some() || args.ecsrp5 {
        return Err(UsageError(
            "--listen, --listen6 and --ecsrp5 are server options".into(),
        ));
    }
    let credentials = cli::credentials(args)?.map(|(u, p)| Credentials::new(&u, &p));
    Ok(ClientConfig {
        host: host.to_owned(),
        port: args.port,
        protocol: if args.udp {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        direction,
        local_bps: rates.local_bps,
        remote_bps: rates.remote_bps,
        duration: args.duration.filter(|d| !d.is_zero()),
        credentials,
        connections: cli::connections(args)?,
        payload: if args.random {
            Payload::Random
        } else {
            Payload::Zeros
        },
        udp_size: cli::udp_size(args)?,
        nat_probe: args.nat,
    })
}

/// The stdout format asked for.
fn output_format(args: &Args) -> Result<Format, UsageError> {
    match (args.json, args.json_lines) {
        (true, true) => Err(UsageError(
            "--json and --json-lines exclude each other".into(),
        )),
        (true, false) => Ok(Format::Json),
        (false, true) => Ok(Format::JsonLines),
        (false, false) => Ok(Format::Text),
    }
}

/// Opens what the client's results go to: stdout in the format asked for, and `--csv`,
/// `--svg` and `--syslog`, opened now so an unwritable path stops the run before the test.
fn client_output(args: &Args, cfg: &ClientConfig) -> Result<ClientOutput, UsageError> {
    let format = output_format(args)?;
    let csv = open_csv(args)?;
    let svg = args
        .svg
        .as_deref()
        .map(|p| SvgSink::create(Path::new(p), ClientOutput::sides(cfg)))
        .transpose()
        .map_err(|e| UsageError(e.to_string()))?;
    let syslog = open_syslog(args)?;
    let opts = OutputOptions {
        format,
        quiet: args.quiet,
        per_stream: args.per_stream,
        timestamps: args.timestamps,
        verbose: args.verbose >= 1 && !args.quiet,
    };
    Ok(ClientOutput::new(cfg, opts, csv)
        .with_svg(svg)
        .with_syslog(syslog))
}

/// Ctrl-C and SIGTERM as a channel; a client runs on without them (until its duration) when
/// they cannot be installed.
fn client_signals() -> Option<crossbeam_channel::Receiver<i32>> {
    match sys::signal::install() {
        Ok(rx) => Some(rx),
        Err(e) => {
            log_error!("cannot install signal handlers: {e}");
            None
        }
    }
}

/// Ends the output with the finished test (summary, `--csv` row, `--svg` picture): the test's
/// own exit code, or 1 when a file could not take it.
fn finish_output(args: &Args, output: &mut ClientOutput, report: &client::Report) -> u8 {
    let mut code = client::exit_code(report) as u8;
    if let Err(e) = output.finish(report) {
        log_error!(
            "cannot append the result to {}: {e}",
            args.csv.as_deref().unwrap_or("the CSV file")
        );
        code = EXIT_FAILED;
    }
    if let Err(e) = output.finish_svg() {
        log_error!(
            "cannot write the picture to {}: {e}",
            args.svg.as_deref().unwrap_or("the SVG file")
        );
        code = EXIT_FAILED;
    }
    code
}

fn run_client(args: &Args, host: &str) -> Result<u8, RunError> {
    let cfg = client_config(args, host)?;
    let mut output = client_output(args, &cfg)?;
    let stop = client_signals();
    output.started();
    let mut sampler = sys::cpu::CpuSampler::new();
    let mut cpu = move || sampler.as_mut().and_then(|s| s.sample());
    let result = client::run(
        &cfg,
        client::Hooks {
            stop: stop.as_ref(),
            cpu: &mut cpu,
            on_interval: &mut |iv| output.interval(iv),
        },
    );
    match result {
        Ok(report) => {
            let code = finish_output(args, &mut output, &report);
            if !report.outcome.reason.is_clean() {
                log_error!("test ended early: {}", report.outcome.reason.describe());
            }
            Ok(code)
        }
        Err(e) => {
            log_error!("{e}");
            output.failed(&e);
            Ok(e.exit_code() as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(words: &[&str]) -> Vec<String> {
        let owned: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        expand_verbose(&owned)
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn combined_verbose_flags_are_split_but_values_are_not() {
        assert_eq!(expand(&["-vv", "-c", "h"]), ["-v", "-v", "-c", "h"]);
        assert_eq!(expand(&["-vvv"]), ["-v", "-v", "-v"]);
        assert_eq!(expand(&["-v", "-q"]), ["-v", "-q"]);
        assert_eq!(expand(&["-p", "-vv", "-vv"]), ["-p", "-vv", "-v", "-v"]);
        assert_eq!(expand(&["--authpass", "-vvv"]), ["--authpass", "-vvv"]);
        assert_eq!(expand(&["-vx", "--", "-"]), ["-vx", "--", "-"]);
    }
}
