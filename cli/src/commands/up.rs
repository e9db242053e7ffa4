//! `orex up`: the whole system on this machine, in one command.

use orex_kit::Shutdown;

use crate::CliError;
use crate::devstack::{self, DEMO_PRINCIPALS, DevLayout, Ports};

/// Generates what is missing in `layout`, starts every service and the
/// gateway, prints where everything is, and runs until Ctrl-C or SIGTERM.
pub async fn run(layout: &DevLayout, ports: Ports) -> Result<(), CliError> {
    let fresh = !layout.config("gateway.toml").is_file();
    // Configs written by an earlier run (and any edits to them) are kept.
    let (gateway_addr, sharing_addr) = devstack::init(layout, ports)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let sharing_listener = devstack::bind(sharing_addr).await?;
    let gateway_listener = devstack::bind(gateway_addr).await?;
    let mut sharing = devstack::spawn_sharing(layout, sharing_listener, shutdown.clone())?;
    let mut gateway = match devstack::spawn_gateway(layout, gateway_listener, shutdown.clone()) {
        Ok((g, _)) => g,
        Err(e) => {
            shutdown.trigger();
            let _ = sharing.await;
            return Err(e);
        }
    };

    let root = layout.root().display();
    crate::outln!("orex dev stack is up (Ctrl-C stops it)\n");
    crate::outln!("  gateway   https://{gateway_addr}   (members connect here)");
    crate::outln!("  sharing   https://{sharing_addr}   (gateway only)");
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

    // Whichever stops first (Ctrl-C, or a failure) stops the other too.
    let (first, other) = tokio::select! {
        s = &mut sharing => (s, gateway),
        g = &mut gateway => (g, sharing),
    };
    shutdown.trigger();
    let second = other.await;
    for r in [first, second] {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(CliError::Invalid(format!("a service task failed: {e}"))),
        }
    }
    crate::outln!("orex dev stack stopped; stores flushed");
    Ok(())
}
