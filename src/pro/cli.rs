//! The command line of `btest-server-pro`: serve (no subcommand) or administer the database
//! (`user`, `ip`, `usage`, `sessions`). `--db` comes before the subcommand.
//!
//! The listening flags are parsed by the plain CLI's functions ([`crate::cli`]) and default to
//! the same constants; every value with a fixed vocabulary (method, direction, zone, period,
//! sizes, the HTTP address) is typed by argh here, so a bad one is a usage error before
//! anything opens.

use std::net::SocketAddr;

use argh::FromArgs;

use crate::cli::{Listen, listen4, listen6};
use crate::handshake::AuthMethod;
use crate::proto::{DEFAULT_PORT, DEFAULT_UDP_PORT_BASE};
use crate::server::addrkey::DEFAULT_IPV6_PREFIX;
use crate::server::{DEFAULT_MAX_HANDSHAKES_PER_IP, DEFAULT_MAX_SESSIONS};

use super::quota::{Dir, Period, Tz, parse_size};

/// btest-server-pro: a public MikroTik bandwidth-test server with users, per-user and per-IP
/// byte budgets and session history in SQLite. Without a subcommand it serves. Sizes are
/// bytes or 500M, 2G, 1.5T (1000-based), 512MiB (1024-based); 0 = unlimited. Default budgets
/// below apply where the database has no override for the user or address.
#[derive(FromArgs, Debug)]
#[argh(help_triggers("-h", "--help"))]
pub(crate) struct ProArgs {
    /// database file (default btest.db); created with mode 0600 and migrated on start
    #[argh(option, arg_name = "PATH", default = "String::from(\"btest.db\")")]
    pub db: String,

    /// control port (default 2000)
    #[argh(option, short = 'P', arg_name = "PORT", default = "DEFAULT_PORT")]
    pub port: u16,

    /// IPv4 listen address (default 0.0.0.0); "none" disables IPv4
    #[argh(option, arg_name = "ADDR", from_str_fn(listen4))]
    #[argh(default = "Listen::DEFAULT_V4")]
    pub listen: Listen,

    /// IPv6 listen address, e.g. "::" (off unless given)
    #[argh(option, arg_name = "ADDR", from_str_fn(listen6))]
    #[argh(default = "Listen::DEFAULT_V6")]
    pub listen6: Listen,

    /// concurrent tests allowed in all (default 100)
    #[argh(option, arg_name = "N", default = "DEFAULT_MAX_SESSIONS")]
    pub max_sessions: usize,

    /// first UDP data port (default 2001)
    #[argh(option, arg_name = "N", default = "DEFAULT_UDP_PORT_BASE")]
    pub udp_port_base: u16,

    /// authentication offered to every client: ecsrp5 (default) or md5 (only users added
    /// with --md5 can log in)
    #[argh(option, arg_name = "METHOD", from_str_fn(auth_method))]
    #[argh(default = "AuthMethod::EcSrp5")]
    pub auth: AuthMethod,

    /// accept unauthenticated tests, accounted per source address only
    #[argh(switch)]
    pub open: bool,

    /// longest test in seconds, 0 = no limit (default 300)
    #[argh(option, arg_name = "SECS", default = "300")]
    pub max_duration: u64,

    /// concurrent tests from one address (default 5)
    #[argh(option, arg_name = "N", default = "5")]
    pub max_conn_per_ip: usize,

    /// days of session history kept; older sessions, intervals and usage buckets are
    /// deleted (usage never before 40 days, which monthly budgets need) (default 90)
    #[argh(option, arg_name = "DAYS", default = "90")]
    pub history_days: u32,

    /// connections one address may hold in the handshake at once (default 32)
    #[argh(option, arg_name = "N", default = "DEFAULT_MAX_HANDSHAKES_PER_IP")]
    pub max_handshakes_per_ip: usize,

    /// IPv6 peers within a prefix of this length count as one address for every
    /// per-address limit and budget (default 64)
    #[argh(option, arg_name = "N", default = "DEFAULT_IPV6_PREFIX")]
    pub ipv6_prefix: u8,

    /// default daily budget of each user (default 0 = unlimited)
    #[argh(option, arg_name = "SIZE", from_str_fn(parse_size))]
    pub daily_quota: Option<u64>,

    /// default weekly (ISO week) budget of each user
    #[argh(option, arg_name = "SIZE", from_str_fn(parse_size))]
    pub weekly_quota: Option<u64>,

    /// default monthly budget of each user
    #[argh(option, arg_name = "SIZE", from_str_fn(parse_size))]
    pub monthly_quota: Option<u64>,

    /// default daily budget of each source address
    #[argh(option, arg_name = "SIZE", from_str_fn(parse_size))]
    pub ip_daily_quota: Option<u64>,

    /// default weekly budget of each source address
    #[argh(option, arg_name = "SIZE", from_str_fn(parse_size))]
    pub ip_weekly_quota: Option<u64>,

    /// default monthly budget of each source address
    #[argh(option, arg_name = "SIZE", from_str_fn(parse_size))]
    pub ip_monthly_quota: Option<u64>,

    /// which bytes the default budgets count: total (default), in (client to server) or out
    #[argh(option, arg_name = "DIR", from_str_fn(quota_direction))]
    #[argh(default = "Dir::Total")]
    pub quota_direction: Dir,

    /// time zone of days, weeks and months: UTC (default) or a fixed offset like +02:00
    /// (no named zones, so no daylight-saving changes)
    #[argh(option, arg_name = "TZ", from_str_fn(Tz::parse))]
    #[argh(default = "Tz::default()")]
    pub tz: Tz,

    /// serve usage, session history, live sessions and Prometheus metrics over HTTP on
    /// ADDR:PORT, e.g. 127.0.0.1:8080 (off unless given)
    #[argh(option, arg_name = "ADDR:PORT", from_str_fn(http_addr))]
    pub http: Option<SocketAddr>,

    /// file holding the bearer token of the HTTP admin endpoints (mode 0600; without it they
    /// are off)
    #[argh(option, arg_name = "PATH")]
    pub http_admin_token_file: Option<String>,

    /// show each session's interval lines and summary on stdout, as btest -s does (default:
    /// only the session start and end lines, on stderr)
    #[argh(switch)]
    pub intervals: bool,

    /// only errors on stderr
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// more detail on stderr; repeat for more
    #[argh(switch, short = 'v')]
    pub verbose: u8,

    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,

    #[argh(subcommand)]
    pub cmd: Option<Sub>,
}

/// Administration subcommands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub(crate) enum Sub {
    /// Users.
    User(UserCmd),
    /// Address budgets.
    Ip(IpCmd),
    /// Usage against budget.
    Usage(UsageCmd),
    /// Session history.
    Sessions(SessionsCmd),
}

/// manage users (add, del, list, passwd, show, set-quota)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "user")]
pub(crate) struct UserCmd {
    #[argh(subcommand)]
    pub cmd: UserSub,
}

/// User subcommands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub(crate) enum UserSub {
    /// Add.
    Add(UserAdd),
    /// Delete.
    Del(UserDel),
    /// List.
    List(UserList),
    /// Change password.
    Passwd(UserPasswd),
    /// Show one.
    Show(UserShow),
    /// Set budgets.
    SetQuota(SetQuota),
}

/// add a user (stores the EC-SRP5 salt and verifier; with --md5 also the password)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "add")]
pub(crate) struct UserAdd {
    /// user name
    #[argh(positional)]
    pub name: String,
    /// password (deprecated here: visible in `ps` and shell history; without it the password
    /// is read from --password-file or the first line of standard input)
    #[argh(positional)]
    pub password: Option<String>,
    /// file whose first line is the password
    #[argh(option, arg_name = "PATH")]
    pub password_file: Option<String>,
    /// also keep the password so the user can log in with MD5 (--auth md5)
    #[argh(switch)]
    pub md5: bool,
}

/// delete a user and their budget overrides
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "del")]
pub(crate) struct UserDel {
    /// user name
    #[argh(positional)]
    pub name: String,
}

/// list users
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
pub(crate) struct UserList {}

/// change a user's password (a user with an MD5 secret keeps one)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "passwd")]
pub(crate) struct UserPasswd {
    /// user name
    #[argh(positional)]
    pub name: String,
    /// new password (deprecated here: visible in `ps` and shell history; without it the password
    /// is read from --password-file or the first line of standard input)
    #[argh(positional)]
    pub password: Option<String>,
    /// file whose first line is the password
    #[argh(option, arg_name = "PATH")]
    pub password_file: Option<String>,
    /// keep the password for MD5 from now on
    #[argh(switch)]
    pub md5: bool,
    /// drop the stored MD5 password (EC-SRP5 only from now on)
    #[argh(switch)]
    pub no_md5: bool,
}

/// show a user, their budgets and this period's usage
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "show")]
pub(crate) struct UserShow {
    /// user name
    #[argh(positional)]
    pub name: String,
}

/// set budgets of a user or address (options not given stay as they were; 0 = unlimited,
/// "default" = back to the server's default)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "set-quota")]
pub(crate) struct SetQuota {
    /// user name or IP address
    #[argh(positional)]
    pub name: String,
    /// daily budget
    #[argh(option, arg_name = "SIZE")]
    pub daily: Option<String>,
    /// weekly budget
    #[argh(option, arg_name = "SIZE")]
    pub weekly: Option<String>,
    /// monthly budget
    #[argh(option, arg_name = "SIZE")]
    pub monthly: Option<String>,
    /// which bytes these count: total (default), in or out
    #[argh(option, arg_name = "DIR", from_str_fn(direction))]
    #[argh(default = "Dir::Total")]
    pub direction: Dir,
}

/// manage per-address budgets (set-quota, show)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ip")]
pub(crate) struct IpCmd {
    #[argh(subcommand)]
    pub cmd: IpSub,
}

/// Address subcommands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub(crate) enum IpSub {
    /// Set budgets.
    SetQuota(SetQuota),
    /// Show.
    Show(IpShow),
}

/// show an address's budgets and this period's usage
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "show")]
pub(crate) struct IpShow {
    /// IP address
    #[argh(positional)]
    pub addr: String,
}

/// print usage against budget for the current day, week or month
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "usage")]
pub(crate) struct UsageCmd {
    /// only this user
    #[argh(option, arg_name = "USER")]
    pub user: Option<String>,
    /// only this address
    #[argh(option, arg_name = "ADDR")]
    pub ip: Option<String>,
    /// day (default), week or month
    #[argh(option, arg_name = "PERIOD", from_str_fn(period))]
    #[argh(default = "Period::Day")]
    pub period: Period,
}

/// list recent sessions, newest first
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "sessions")]
pub(crate) struct SessionsCmd {
    /// how many (default 20)
    #[argh(option, arg_name = "N", default = "20")]
    pub last: u32,
}

/// `--auth`: the method offered to every client.
fn auth_method(value: &str) -> Result<AuthMethod, String> {
    match value {
        "ecsrp5" => Ok(AuthMethod::EcSrp5),
        "md5" => Ok(AuthMethod::Md5),
        other => Err(format!("--auth must be ecsrp5 or md5, not '{other}'")),
    }
}

/// `--quota-direction`: which bytes the default budgets count.
fn quota_direction(value: &str) -> Result<Dir, String> {
    Dir::parse(value)
        .ok_or_else(|| format!("--quota-direction must be in, out or total, not '{value}'"))
}

/// `set-quota --direction`: which bytes the budgets being set count.
fn direction(value: &str) -> Result<Dir, String> {
    Dir::parse(value).ok_or_else(|| format!("--direction must be in, out or total, not '{value}'"))
}

/// `usage --period`.
fn period(value: &str) -> Result<Period, String> {
    Period::parse(value)
        .ok_or_else(|| format!("--period must be day, week or month, not '{value}'"))
}

/// `--http`: one address and port.
fn http_addr(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!("--http takes ADDR:PORT such as 127.0.0.1:8080 or [::1]:8080, not '{value}'")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_parse_and_refuse_with_the_flag_named() {
        assert_eq!(auth_method("md5"), Ok(AuthMethod::Md5));
        assert_eq!(
            auth_method("MD5"),
            Err("--auth must be ecsrp5 or md5, not 'MD5'".into())
        );
        assert_eq!(quota_direction("in"), Ok(Dir::In));
        assert!(
            quota_direction("up")
                .unwrap_err()
                .starts_with("--quota-direction ")
        );
        assert_eq!(direction("out"), Ok(Dir::Out));
        assert!(direction("").unwrap_err().starts_with("--direction "));
        assert_eq!(period("month"), Ok(Period::Month));
        assert!(period("Day").unwrap_err().starts_with("--period "));
        assert_eq!(http_addr("[::1]:8080"), Ok("[::1]:8080".parse().unwrap()));
        assert!(http_addr("8080").is_err());
    }

    #[test]
    fn help_states_the_defaults_in_force() {
        let help = crate::cli::tests::help_of::<ProArgs>();
        for phrase in [
            format!("--port control port (default {DEFAULT_PORT})"),
            format!("first UDP data port (default {DEFAULT_UDP_PORT_BASE})"),
            format!("concurrent tests allowed in all (default {DEFAULT_MAX_SESSIONS})"),
            format!("handshake at once (default {DEFAULT_MAX_HANDSHAKES_PER_IP})"),
            format!("limit and budget (default {DEFAULT_IPV6_PREFIX})"),
        ] {
            assert!(help.contains(&phrase), "{phrase:?} not in {help}");
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let args = ProArgs::from_args(&["btest-server-pro"], &[]).unwrap();
        assert_eq!(args.auth, AuthMethod::EcSrp5);
        assert_eq!(args.quota_direction, Dir::Total);
        assert_eq!(args.tz.name(), "UTC");
        assert_eq!(args.listen, Listen::At("0.0.0.0".parse().unwrap()));
        assert_eq!(args.listen6, Listen::Off);
        assert_eq!(args.max_sessions, 100);
        assert_eq!(args.max_handshakes_per_ip, 32);
        assert_eq!(args.ipv6_prefix, 64);
    }
}
