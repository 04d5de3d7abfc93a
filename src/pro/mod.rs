//! `btest-server-pro`: the plain server core with a user database, byte budgets and session
//! history (feature `pro`).
//!
//! * [`db`]: SQLite file (mode 0600, WAL, versioned schema) and the r2d2 read pool.
//! * [`writer`]: the one writer thread; everything else only sends on its channel.
//! * [`quota`]: periods in a fixed-offset zone, budgets with a TTL cache, live counters.
//! * [`admission`]: the [`Admission`](crate::server::policy::Admission) the core consults.
//! * [`authn`]: users from the database as an
//!   [`Authenticator`](crate::handshake::server::Authenticator).
//! * [`users`]: the administration commands; [`cli`]: the flags.

pub mod admission;
pub mod authn;
pub mod budget;
pub mod cli;
pub mod db;
pub mod health;
pub mod http;
pub mod live;
pub mod quota;
pub mod refusals;
pub mod secret_input;
pub mod store;
pub mod users;
pub mod writer;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::app::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::handshake::AuthMethod;
use crate::handshake::server::{Authenticator, NoAuth};
use crate::server::{Server, ServerConfig};
use crate::{log, log_error};

use self::admission::ProAdmission;
use self::cli::{IpSub, ProArgs, Sub, UserSub};
use self::db::{Db, sql};
use self::quota::{Clock, Dir, Kind, Limits, Period, QuotaConfig, Quotas, SystemClock, Tz};
use self::users::{AdminError, Settings};

/// How long budgets read from the database are trusted before being read again.
pub const BUDGET_TTL: Duration = Duration::from_secs(5);

/// Runs the program with `args` (program name first) and returns the exit code.
pub fn main_with_args(args: &[String]) -> u8 {
    // No `-vv` expansion here: user subcommands take passwords as plain arguments.
    let name = args.first().map_or("btest-server-pro", |s| s.as_str());
    let rest: Vec<&str> = args.iter().skip(1).map(|s| s.as_str()).collect();
    let parsed: ProArgs = match crate::app::parse_args(name, &rest) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if parsed.version {
        println!(
            "btest-server-pro {} (schema {}, auth: md5, ecsrp5)",
            env!("CARGO_PKG_VERSION"),
            db::SCHEMA_VERSION
        );
        return EXIT_OK;
    }
    crate::log::set_level(if parsed.quiet {
        crate::log::ERRORS_ONLY
    } else {
        parsed.verbose.min(2) as i8
    });
    match &parsed.cmd {
        None => serve(&parsed),
        Some(cmd) => match admin(&parsed, cmd) {
            Ok(out) => {
                print!("{out}");
                EXIT_OK
            }
            Err(AdminError::Usage(m)) => {
                log_error!("{m}");
                EXIT_USAGE
            }
            Err(e) => {
                log_error!("{e}");
                EXIT_FAILED
            }
        },
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
        Sub::Usage(u) => users::usage(&conn, u.user.as_deref(), u.ip.as_deref(), &u.period, now),
        Sub::Sessions(s) => users::sessions(&conn, s.last),
    }
}

fn set_quota(conn: &rusqlite::Connection, kind: Kind, q: &cli::SetQuota) -> Result<(), AdminError> {
    let dir = users::parse_dir(&q.direction)?;
    users::set_quota(
        conn,
        kind,
        &q.name,
        [
            q.daily.as_deref(),
            q.weekly.as_deref(),
            q.monthly.as_deref(),
        ],
        dir,
    )
}

/// The serving configuration after validation.
struct Serve {
    cfg: ServerConfig,
    settings: Settings,
    method: AuthMethod,
    limits: admission::Limits,
    http: Option<SocketAddr>,
}

fn usage_err(m: impl Into<String>) -> String {
    m.into()
}

fn parse_listen(v: &str, v6: bool) -> Result<Option<IpAddr>, String> {
    if v.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let ip: IpAddr = v
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("invalid listen address '{v}'"))?;
    if ip.is_ipv6() != v6 {
        return Err(format!(
            "{} takes an IPv{} address, got '{v}'",
            if v6 { "--listen6" } else { "--listen" },
            if v6 { 6 } else { 4 }
        ));
    }
    Ok(Some(ip))
}

fn defaults(sizes: [&Option<String>; 3], dir: Dir) -> Result<Limits, String> {
    let mut l = Limits::default();
    for (p, s) in Period::ALL.into_iter().zip(sizes) {
        if let Some(s) = s {
            l.of_mut(p).set(dir, quota::parse_size(s)?);
        }
    }
    Ok(l)
}

fn validate(args: &ProArgs) -> Result<Serve, String> {
    let listen4 = match &args.listen {
        Some(v) => parse_listen(v, false)?,
        None => Some(IpAddr::from([0, 0, 0, 0])),
    };
    let listen6 = match &args.listen6 {
        Some(v) => parse_listen(v, true)?,
        None => None,
    };
    if listen4.is_none() && listen6.is_none() {
        return Err(usage_err(
            "--listen none without --listen6 leaves nothing to listen on",
        ));
    }
    if args.max_sessions == 0 || args.max_conn_per_ip == 0 || args.max_handshakes_per_ip == 0 {
        return Err(usage_err(
            "--max-sessions, --max-conn-per-ip and --max-handshakes-per-ip must be at least 1",
        ));
    }
    let ipv6_prefix = crate::server::addrkey::parse_prefix(args.ipv6_prefix)?;
    if args.history_days == 0 {
        return Err(usage_err("--history-days must be at least 1"));
    }
    let method = match args.auth.as_str() {
        "ecsrp5" => AuthMethod::EcSrp5,
        "md5" => AuthMethod::Md5,
        other => return Err(format!("--auth must be ecsrp5 or md5, not '{other}'")),
    };
    let dir = Dir::parse(&args.quota_direction).ok_or_else(|| {
        format!(
            "--quota-direction must be in, out or total, not '{}'",
            args.quota_direction
        )
    })?;
    let tz = Tz::parse(&args.tz)?;
    let http = match &args.http {
        Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| {
            format!("--http takes ADDR:PORT such as 127.0.0.1:8080 or [::1]:8080, not '{v}'")
        })?),
        None => None,
    };
    if args.http_admin_token_file.is_some() && http.is_none() {
        return Err(usage_err("--http-admin-token-file needs --http"));
    }
    let settings = Settings {
        tz,
        user: defaults(
            [&args.daily_quota, &args.weekly_quota, &args.monthly_quota],
            dir,
        )?,
        ip: defaults(
            [
                &args.ip_daily_quota,
                &args.ip_weekly_quota,
                &args.ip_monthly_quota,
            ],
            dir,
        )?,
    };
    let mut cfg = ServerConfig::new(listen4, listen6, args.port);
    cfg.max_sessions = args.max_sessions;
    cfg.udp_port_base = args.udp_port_base;
    cfg.max_handshakes_per_ip = args.max_handshakes_per_ip;
    cfg.ipv6_prefix = ipv6_prefix;
    Ok(Serve {
        cfg,
        settings,
        method,
        limits: admission::Limits {
            max_duration: (args.max_duration > 0).then(|| Duration::from_secs(args.max_duration)),
            max_conn_per_ip: args.max_conn_per_ip,
            ipv6_prefix,
        },
        http,
    })
}

fn serve(args: &ProArgs) -> u8 {
    let s = match validate(args) {
        Ok(s) => s,
        Err(m) => {
            log_error!("{m}");
            return EXIT_USAGE;
        }
    };
    match serve_with(args, s) {
        Ok(code) => code,
        Err(e) => {
            log_error!("{e}");
            EXIT_FAILED
        }
    }
}

fn serve_with(args: &ProArgs, s: Serve) -> Result<u8, Box<dyn std::error::Error>> {
    let db = Db::open(Path::new(&args.db))?;
    let _lock = db.lock_exclusive()?;
    {
        let conn = db.connection()?;
        users::save_settings(&conn, &s.settings)?;
        // Rows left 'running' by a killed server: their usage is stored, their end is not.
        conn.execute(
            "UPDATE sessions SET outcome = 'error', detail = 'server stopped during the test' \
             WHERE outcome = 'running'",
            [],
        )
        .map_err(sql("closing stale sessions"))?;
    }
    // Read before anything starts, so a bad token file stops the start with nothing to undo.
    let admin_token = match &args.http_admin_token_file {
        Some(p) => Some(http::read_token(p)?),
        None => None,
    };
    let writer = writer::Writer::start_with(db.connection()?, args.history_days)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let quotas = Arc::new(Quotas::new(
        db.pool().clone(),
        clock.clone(),
        QuotaConfig {
            tz: s.settings.tz,
            defaults_user: s.settings.user,
            defaults_ip: s.settings.ip,
            ttl: BUDGET_TTL,
        },
    ));
    let mut cfg = s.cfg;
    let admission =
        ProAdmission::new(quotas, writer.sender(), s.limits).with_health(writer.health());
    let live = admission.live();
    let admission = Arc::new(admission);
    cfg.admission = admission.clone();
    let out = if args.intervals {
        let shown = crate::server::output::Options {
            format: crate::server::output::Format::Text,
            intervals: true,
        };
        let out = crate::server::output::ServerOutput::stdout(shown)?;
        cfg.admission = Arc::new(crate::server::output::Announcer::new(
            cfg.admission,
            out.clone(),
        ));
        Some(out)
    } else {
        None
    };
    cfg.auth = if args.open {
        Arc::new(NoAuth) as Arc<dyn Authenticator>
    } else {
        Arc::new(authn::DbAuth::new(db.pool().clone(), s.method))
    };
    let stop = crate::sys::signal::install()?;
    let server = Server::bind(cfg)?;
    log!(
        0,
        "database {} (schema {}); auth {}; periods in {}",
        db.path().display(),
        db::SCHEMA_VERSION,
        if args.open {
            "none (--open)"
        } else {
            s.method.name()
        },
        s.settings.tz.name()
    );
    let web = match s.http {
        Some(addr) => Some(http::HttpServer::start(
            addr,
            Arc::new(http::Context {
                pool: db.separate_pool(2)?,
                tz: s.settings.tz,
                defaults_user: s.settings.user,
                defaults_ip: s.settings.ip,
                clock,
                live,
                writes: writer.sender(),
                admin_token,
                ipv6_prefix: args.ipv6_prefix,
                token_failures: Default::default(),
                health: writer.health(),
            }),
        )?),
        None => None,
    };
    let served = server.serve(&stop);
    if let Some(out) = out {
        out.flush(Duration::from_secs(1));
    }
    if let Some(web) = web {
        web.shutdown();
    }
    admission.flush_refusals();
    let rows = writer.shutdown();
    log!(0, "database writer stopped after {rows} rows");
    served?;
    Ok(EXIT_OK)
}
