//! `orex up`: the whole system on this machine, in one command.

use orex_kit::{KitError, Shutdown};
use tokio::task::JoinHandle;

use crate::CliError;
use crate::devstack::{self, DEMO_PRINCIPALS, DevLayout, Ports};

type Task = JoinHandle<Result<(), KitError>>;

/// Stops whatever started, then hands back `e`.
async fn abandon(shutdown: &Shutdown, started: Vec<Task>, e: CliError) -> Result<(), CliError> {
    shutdown.trigger();
    for t in started {
        let _ = t.await;
    }
    Err(e)
}

/// Generates what is missing in `layout`, starts every service and the
/// gateway, prints where everything is, and runs until Ctrl-C or SIGTERM.
pub async fn run(layout: &DevLayout, ports: Ports) -> Result<(), CliError> {
    let fresh = !layout.config("gateway.toml").is_file();
    // Configs written by an earlier run (and any edits to them) are kept.
    let addrs = devstack::init(layout, ports)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let sharing_listener = devstack::bind(addrs.sharing).await?;
    let risk_listener = devstack::bind(addrs.risk).await?;
    let emergency_listener = devstack::bind(addrs.emergency).await?;
    let gateway_listener = devstack::bind(addrs.gateway).await?;
    let mut tasks = vec![devstack::spawn_sharing(
        layout,
        sharing_listener,
        shutdown.clone(),
    )?];
    match devstack::spawn_risk(layout, risk_listener, shutdown.clone()) {
        Ok((t, _)) => tasks.push(t),
        Err(e) => return abandon(&shutdown, tasks, e).await,
    }
    match devstack::spawn_emergency(layout, emergency_listener, shutdown.clone()) {
        Ok(t) => tasks.push(t),
        Err(e) => return abandon(&shutdown, tasks, e).await,
    }
    match devstack::spawn_gateway(layout, gateway_listener, shutdown.clone()) {
        Ok((t, _)) => tasks.push(t),
        Err(e) => return abandon(&shutdown, tasks, e).await,
    }

    let root = layout.root().display();
    crate::outln!("orex dev stack is up (Ctrl-C stops it)\n");
    crate::outln!(
        "  gateway   https://{}   (members connect here)",
        addrs.gateway
    );
    crate::outln!("  sharing   https://{}   (gateway only)", addrs.sharing);
    crate::outln!("  risk      https://{}   (gateway only)", addrs.risk);
    crate::outln!(
        "  emergency https://{}   (gateway; risk for stockpiles)",
        addrs.emergency
    );
    crate::outln!("  data      {root}/data");
    if fresh {
        crate::outln!("  configs   {root}/config   (generated; edits are kept across runs)");
    } else {
        crate::outln!(
            "  configs   {root}/config   (kept from an earlier run; delete them to regenerate)"
        );
    }
    crate::outln!("  CA        {}", layout.ca_cert().display());
    crate::outln!(
        "  audit key {}   (public half, for `orex audit verify`)",
        layout.audit_keys().1.display()
    );
    crate::outln!("\n  client bundles (CA, certificate, key, token valid 8 h):");
    for p in DEMO_PRINCIPALS {
        crate::outln!(
            "    {:<12} {}  member {} subject {} roles {}",
            p.bundle,
            layout.bundle(p.bundle).display(),
            p.member,
            p.subject,
            p.roles.join(",")
        );
    }
    crate::outln!("\n  try:  orex report list --bundle {root}/bundles/us-alice");
    crate::outln!("        orex risk list --bundle {root}/bundles/us-ana");

    // Whichever stops first (Ctrl-C, or a failure) stops the others too.
    let (first, _, rest) = futures::future::select_all(tasks.iter_mut()).await;
    shutdown.trigger();
    let mut results = vec![first];
    for t in rest {
        results.push(t.await);
    }
    for r in results {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(CliError::Invalid(format!("a service task failed: {e}"))),
        }
    }
    crate::outln!("orex dev stack stopped; stores flushed");
    Ok(())
}
