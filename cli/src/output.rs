//! Printing to standard output that ends the command quietly when its reader
//! has gone (`orex report list | head -1`). Rust ignores SIGPIPE, so
//! `println!` would panic with a backtrace on the first line after the
//! reader closed the pipe; here the process exits with status 0 instead,
//! as a Unix tool killed by SIGPIPE would stop (without the noise). Use
//! [`outln!`](crate::outln) and [`out!`](crate::out), never `println!`
//! (clippy's `print_stdout` is denied in this crate).

use std::io::Write;

/// Writes `args` (and a newline) to stdout; see the module documentation.
pub fn write_out(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            out.flush()
        }
    });
    if let Err(e) = written {
        exit_on_write_error(&e);
    }
}

/// Ends the process for a failed write to stdout: quietly (status 0) when
/// the reader has gone, with a message (status 1) otherwise.
pub fn exit_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("orex: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// `println!` that stops quietly when stdout's reader has gone.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_out(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*), true)
    };
}

/// `print!` that stops quietly when stdout's reader has gone.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*), false)
    };
}
