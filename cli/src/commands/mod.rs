//! What each `orex` subcommand does; `main.rs` only parses arguments.

pub mod admin;
pub mod audit;
pub mod dev;
pub mod emergency;
pub mod report;
pub mod risk;
pub mod stockpile;
pub mod up;

/// Prints a server stream until it ends or Ctrl-C: each event as a proto3
/// JSON line of message `json` (`Some("orex.risk.v1.…")`), or with `print`
/// for people. Every `watch` command is this loop.
pub(crate) async fn watch<T>(
    mut stream: tonic::Streaming<T>,
    json: Option<&str>,
    print: impl Fn(&T),
) -> Result<(), crate::CliError>
where
    T: prost::Message + Default + 'static,
{
    use futures::StreamExt;
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(ev)) => match json {
                    Some(name) => crate::outln!("{}", crate::json::line(name, &ev)?),
                    None => print(&ev),
                },
                Some(Err(status)) => return Err(status.into()),
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
