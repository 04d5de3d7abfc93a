//! Where `user add` and `user passwd` get the password: a password on the command line is
//! seen by every local user in `ps` and stays in the shell history, so it is read from
//! `--password-file` or standard input; the positional form is kept for old scripts, with a
//! warning.

use std::io::BufRead;

use super::users::AdminError;
use crate::log;

/// The password from the positional argument (warned about), the file, or stdin's first line.
pub(crate) fn read_password(
    positional: Option<&str>,
    file: Option<&str>,
) -> Result<String, AdminError> {
    let password = match (positional, file) {
        (Some(_), Some(_)) => {
            return Err(AdminError::Usage(
                "give the password either as an argument or with --password-file, not both".into(),
            ));
        }
        (Some(p), None) => {
            log!(
                0,
                "warning: a password on the command line is visible in ps and the shell \
                 history; pipe it on standard input or use --password-file"
            );
            p.to_owned()
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                AdminError::Usage(format!("cannot read the password file {path}: {e}"))
            })?;
            first_line(&text)
        }
        (None, None) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| AdminError::Usage(format!("cannot read the password: {e}")))?;
            first_line(&line)
        }
    };
    if password.is_empty() {
        return Err(AdminError::Usage(
            "empty password (give it on standard input or with --password-file)".into(),
        ));
    }
    Ok(password)
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_gives_its_first_line_and_both_sources_is_an_error() {
        let p = std::env::temp_dir().join(format!("btest-pw-{}", std::process::id()));
        std::fs::write(&p, "s3cret\r\nignored\n").unwrap();
        let path = p.to_str().unwrap();
        assert_eq!(read_password(None, Some(path)).unwrap(), "s3cret");
        assert!(read_password(Some("x"), Some(path)).is_err());
        assert_eq!(read_password(Some("x"), None).unwrap(), "x");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_password(None, Some(path)).is_err());
        let _ = std::fs::remove_file(&p);
    }
}
