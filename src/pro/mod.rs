//! `btest-server-pro`: the plain server core with a user database, byte budgets and session
//! history (feature `pro`).
//!
//! * [`db`]: SQLite file (mode 0600, WAL, versioned schema) and the r2d2 read pool.
//! * [`writer`]: the one writer thread; everything else only sends on its channel.
//! * [`quota`]: periods in a fixed-offset zone, budgets with a TTL cache, live counters.
//! * [`admission`]: the [`Admission`](crate::server::policy::Admission) the core consults.
//! * `authn`: users from the database as an
//!   [`Authenticator`].
//! * `users`: the administration commands; `cli`: the flags.

pub mod admission;
pub(crate) mod authn;
pub(crate) mod budget;
pub(crate) mod cli;
pub mod db;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod live;
pub mod quota;
pub(crate) mod refusals;
pub(crate) mod secret_input;
pub(crate) mod store;
pub(crate) mod users;
pub mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::app::{EXIT_OK, Program, RunError};
use crate::cli::UsageError;
use crate::handshake::server::{Authenticator, NoAuth};
use crate::log;
use crate::server::output::{Announcer, Format, ServerOutput};
use crate::server::{Server, ServerConfig};

use self::admission::ProAdmission;
use self::cli::{IpSub, ProArgs, Sub, UserSub};
use self::db::{Db, sql};
use self::live::Live;
use self::quota::{Clock, Dir, Kind, Limits, Period, QuotaConfig, Quotas, SystemClock};
use self::users::{AdminError, Settings};
use self::writer::Writer;

/// How long budgets read from the database are trusted before being read again.
pub(crate) const BUDGET_TTL: Duration = Duration::from_secs(5);

/// How long a stopping server waits for its last interval lines to reach stdout.
const OUTPUT_FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// Runs the program with `args` (program name first) and returns the exit code.
pub fn main_with_args(args: &[String]) -> u8 {
    // No `-vv` expansion here: user subcommands take passwords as plain arguments.
    let name = args.first().map_or("btest-server-pro", |s| s.as_str());
    let rest: Vec<&str> = args.iter().skip(1).map(|s| s.as_str()).collect();
    crate::app::run_program::<ProArgs>(name, &rest)
}

impl Program for ProArgs {
    fn version(&self) -> Option<String> {
        self.version.then(|| {
            format!(
                "btest-server-pro {} (schema {}, auth: md5, ecsrp5)",
                env!("CARGO_PKG_VERSION"),
                db::SCHEMA_VERSION
            )
        })
    }

    fn log_level(&self) -> i8 {
        log::chosen(self.quiet.then_some(log::ERRORS_ONLY), self.verbose)
    }

    fn run(&self) -> Result<u8, RunError> {
        match &self.cmd {
            None => serve(self),
            Some(cmd) => {
                print!("{}", admin(self, cmd)?);
                Ok(EXIT_OK)
            }
        }
    }
}

impl From<AdminError> for RunError {
    fn from(e: AdminError) -> RunError {
        match e {
            AdminError::Usage(m) => RunError::Usage(UsageError(m)),
            e => RunError::failed(e.to_string()),
        }
    }
}

fn admin(args: &ProArgs, cmd: &Sub) -> Result<String, AdminError> {
    let db = Db::open(Path::new(&args.db))?;
    let conn = db.connection()?;
    let now = SystemClock.now();
    match cmd {
        Sub::User(u) => match &u.cmd {
            UserSub::Add(a) => {
                let password =
                    secret_input::read_password(a.password.as_deref(), a.password_file.as_deref())?;
                users::add(&conn, &a.name, &password, a.md5)?;
                Ok(format!("user '{}' added\n", a.name))
            }
            UserSub::Del(d) => {
                users::del(&conn, &d.name)?;
                Ok(format!("user '{}' deleted\n", d.name))
            }
            UserSub::List(_) => users::list(&conn),
            UserSub::Passwd(p) => {
                let password =
                    secret_input::read_password(p.password.as_deref(), p.password_file.as_deref())?;
                users::passwd(&conn, &p.name, &password, p.md5, p.no_md5)?;
                Ok(format!("password of '{}' changed\n", p.name))
            }
            UserSub::Show(s) => users::show_user(&conn, &s.name, now),
            UserSub::SetQuota(q) => {
                set_quota(&conn, Kind::User, q)?;
                users::show_user(&conn, &q.name, now)
            }
        },
        Sub::Ip(i) => match &i.cmd {
            IpSub::SetQuota(q) => {
                set_quota(&conn, Kind::Ip, q)?;
                users::show_ip(&conn, &q.name, now)
            }
            IpSub::Show(s) => users::show_ip(&conn, &s.addr, now),
        },
        Sub::Usage(u) => {
            let (user, ip) = (u.user.as_deref(), u.ip.as_deref());
            users::usage(&conn, user, ip, u.period.name(), now)
        }
        Sub::Sessions(s) => users::sessions(&conn, s.last),
    }
}

fn set_quota(conn: &rusqlite::Connection, kind: Kind, q: &cli::SetQuota) -> Result<(), AdminError> {
    let sizes = [
        q.daily.as_deref(),
        q.weekly.as_deref(),
        q.monthly.as_deref(),
    ];
    users::set_quota(conn, kind, &q.name, sizes, q.direction)
}

/// The serving configuration after validation.
struct Serve {
    cfg: ServerConfig,
    settings: Settings,
    limits: admission::Limits,
}

/// The default budgets of one kind of subject, counting `dir`.
fn defaults(sizes: [Option<u64>; 3], dir: Dir) -> Limits {
    let mut limits = Limits::default();
    for (period, size) in Period::ALL.into_iter().zip(sizes) {
        if let Some(bytes) = size {
            limits.of_mut(period).set(dir, bytes);
        }
    }
    limits
}

/// The checks argh cannot make: the listeners and limits (shared with `btest -s`), the
/// history and the HTTP token's need of `--http`.
fn validate(args: &ProArgs) -> Result<Serve, UsageError> {
    let listen = [args.listen, args.listen6];
    let mut cfg = crate::cli::server_config(listen, args.port, args.udp_port_base)?;
    if args.max_sessions == 0 || args.max_conn_per_ip == 0 || args.max_handshakes_per_ip == 0 {
        return Err(UsageError(
            "--max-sessions, --max-conn-per-ip and --max-handshakes-per-ip must be at least 1"
                .into(),
        ));
    }
    let (sessions, handshakes) = (args.max_sessions, args.max_handshakes_per_ip);
    crate::cli::limit(&mut cfg, sessions, handshakes, args.ipv6_prefix)?;
    if args.history_days == 0 {
        return Err(UsageError("--history-days must be at least 1".into()));
    }
    if args.http_admin_token_file.is_some() && args.http.is_none() {
        return Err(UsageError("--http-admin-token-file needs --http".into()));
    }
    let dir = args.quota_direction;
    let settings = Settings {
        tz: args.tz,
        user: defaults(
            [args.daily_quota, args.weekly_quota, args.monthly_quota],
            dir,
        ),
        ip: defaults(
            [
                args.ip_daily_quota,
                args.ip_weekly_quota,
                args.ip_monthly_quota,
            ],
            dir,
        ),
    };
    let limits = admission::Limits {
        max_duration: (args.max_duration > 0).then(|| Duration::from_secs(args.max_duration)),
        max_conn_per_ip: args.max_conn_per_ip,
        ipv6_prefix: cfg.ipv6_prefix,
    };
    Ok(Serve {
        cfg,
        settings,
        limits,
    })
}

fn serve(args: &ProArgs) -> Result<u8, RunError> {
    let s = validate(args)?;
    serve_with(args, s).map_err(RunError::Failed)?;
    Ok(EXIT_OK)
}

type StartError = Box<dyn std::error::Error>;

/// Opens and locks the database, stores the settings reports read, and closes the rows a
/// killed server left running. Returns the lock, held while serving.
fn open_database(args: &ProArgs, settings: &Settings) -> Result<(Db, std::fs::File), StartError> {
    let db = Db::open(Path::new(&args.db))?;
    let lock = db.lock_exclusive()?;
    let conn = db.connection()?;
    users::save_settings(&conn, settings)?;
    // Rows left 'running' by a killed server: their usage is stored, their end is not.
    conn.execute(
        "UPDATE sessions SET outcome = 'error', detail = 'server stopped during the test' \
         WHERE outcome = 'running'",
        [],
    )
    .map_err(sql("closing stale sessions"))?;
    Ok((db, lock))
}

/// The admission over the database's budgets: quotas read through a TTL cache, rows and usage
/// sent to the writer.
fn admission(db: &Db, writer: &Writer, s: &Serve, clock: Arc<dyn Clock>) -> ProAdmission {
    let quotas = Arc::new(Quotas::new(
        db.pool().clone(),
        clock,
        QuotaConfig {
            tz: s.settings.tz,
            defaults_user: s.settings.user,
            defaults_ip: s.settings.ip,
            ttl: BUDGET_TTL,
        },
    ));
    ProAdmission::new(quotas, writer.sender(), s.limits).with_health(writer.health())
}

/// With `--intervals`, each session's lines on stdout as `btest -s` prints them, in front of
/// the admission.
fn interval_output(
    args: &ProArgs,
    cfg: &mut ServerConfig,
) -> Result<Option<Arc<ServerOutput>>, StartError> {
    if !args.intervals {
        return Ok(None);
    }
    let shown = crate::server::output::Options {
        format: Format::Text,
        intervals: true,
    };
    let out = ServerOutput::stdout(shown)?;
    cfg.admission = Arc::new(Announcer::new(cfg.admission.clone(), out.clone()));
    Ok(Some(out))
}

/// The `--http` side, when asked for: its own read pool, the same clock and budgets, the live
/// sessions and the writer's state.
fn start_http(
    args: &ProArgs,
    settings: &Settings,
    (db, writer): (&Db, &Writer),
    (clock, live): (Arc<dyn Clock>, Arc<Live>),
    admin_token: Option<Vec<u8>>,
) -> Result<Option<http::HttpServer>, StartError> {
    let Some(addr) = args.http else {
        return Ok(None);
    };
    let ctx = http::Context {
        pool: db.separate_pool(2)?,
        tz: settings.tz,
        defaults_user: settings.user,
        defaults_ip: settings.ip,
        clock,
        live,
        writes: writer.sender(),
        admin_token,
        ipv6_prefix: args.ipv6_prefix,
        token_failures: Default::default(),
        health: writer.health(),
    };
    Ok(Some(http::HttpServer::start(addr, Arc::new(ctx))?))
}

fn serve_with(args: &ProArgs, mut s: Serve) -> Result<(), StartError> {
    let (db, _lock) = open_database(args, &s.settings)?;
    // Read before anything starts, so a bad token file stops the start with nothing to undo.
    let admin_token = match &args.http_admin_token_file {
        Some(p) => Some(http::read_token(p)?),
        None => None,
    };
    let writer = Writer::start_with(db.connection()?, args.history_days)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let admission = Arc::new(admission(&db, &writer, &s, clock.clone()));
    s.cfg.admission = admission.clone();
    let out = interval_output(args, &mut s.cfg)?;
    s.cfg.auth = if args.open {
        Arc::new(NoAuth) as Arc<dyn Authenticator>
    } else {
        Arc::new(authn::DbAuth::new(db.pool().clone(), args.auth))
    };
    let stop = crate::sys::signal::install()?;
    let server = Server::bind(s.cfg)?;
    log!(
        0,
        "database {} (schema {}); auth {}; periods in {}",
        db.path().display(),
        db::SCHEMA_VERSION,
        if args.open {
            "none (--open)"
        } else {
            args.auth.name()
        },
        s.settings.tz.name()
    );
    let live = admission.live();
    let web = start_http(
        args,
        &s.settings,
        (&db, &writer),
        (clock, live),
        admin_token,
    )?;
    let served = server.serve(&stop);
    if let Some(out) = out {
        out.flush(OUTPUT_FLUSH_LIMIT);
    }
    if let Some(web) = web {
        web.shutdown();
    }
    admission.flush_refusals();
    let rows = writer.shutdown();
    log!(0, "database writer stopped after {rows} rows");
    Ok(served?)
}
