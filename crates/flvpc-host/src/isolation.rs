//! flvpc's own wall between namespace networks, in an nftables table of its own.
//!
//! Docker isolates user-defined bridges with iptables rules (`DOCKER-ISOLATION-STAGE-1/2`), but
//! it rewrites its FORWARD jumps to them at every network create and remove: delete, then insert
//! again. In between, a packet from one bridge to another is forwarded. Anyone's network churn
//! opens those windows (measured here: 12 of 1,500 pings crossed between two namespaces while 15
//! other networks were created and removed), so a tenant's machine probing all the time would
//! reach other tenants' machines now and then.
//!
//! So every namespace network's bridge is also in the set `bridges` of the table
//! `inet flvpc_isolation`, whose forward chain runs before Docker's (priority filter - 10) and
//! which Docker never touches: a packet between two different bridges where either is a flvpc
//! namespace's (or the other is any Docker bridge) is dropped. Traffic inside one bridge (seen by
//! the forward hook too, through br_netfilter) is let through by the `same_bridge` pairs.
//! Published ports (in from the host's interfaces), the host itself and the internet are
//! unaffected.
//!
//! Rules are written with `nft -f -` (Debian's nftables package): the script is made of this
//! module's constants and bridge names checked by [`check_bridge`], never of user input, and is
//! passed on standard input, not through a shell.

use crate::engine::EngineError;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// The nftables table flvpc owns.
pub const TABLE: &str = "flvpc_isolation";

/// The table, its sets and its chain's rules: idempotent (declarations add, the chain's rules are
/// replaced in the same transaction).
const SETUP: &str = "table inet flvpc_isolation {
  set bridges { type ifname; }
  set same_bridge { type ifname . ifname; }
  chain forward { type filter hook forward priority filter - 10; policy accept; }
}
flush chain inet flvpc_isolation forward
table inet flvpc_isolation {
  chain forward {
    iifname . oifname @same_bridge accept
    iifname @bridges oifname @bridges drop
    iifname @bridges oifname { \"br-*\", \"docker0\" } drop
    iifname { \"br-*\", \"docker0\" } oifname @bridges drop
  }
}
";

/// A bridge name as Docker makes them (`br-` and 12 hex digits) or as a network's
/// `com.docker.network.bridge.name` option gives it (an interface name: 1–15 of `[A-Za-z0-9_.-]`).
pub fn check_bridge(name: &str) -> Result<&str, EngineError> {
    let valid = (1..=15).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(name)
    } else {
        Err(EngineError::Isolation { detail: format!("{name:?} is not a bridge interface name") })
    }
}

/// Makes sure the table is there, with `bridges` in it (on top of those already there).
pub async fn protect(bridges: &[String]) -> Result<(), EngineError> {
    let mut script = String::from(SETUP);
    for bridge in bridges {
        let bridge = check_bridge(bridge)?;
        script.push_str(&format!(
            "add element inet {TABLE} bridges {{ \"{bridge}\" }}\n\
             add element inet {TABLE} same_bridge {{ \"{bridge}\" . \"{bridge}\" }}\n"
        ));
    }
    nft(&script).await
}

/// Puts `bridges` in the table as bridges whose ports may not talk to each other (only in the
/// set `bridges`, not in `same_bridge`): for `docker_gwbridge`, which every overlay machine of
/// an engine has a port on, whatever its namespace.
pub async fn protect_ports_apart(bridges: &[String]) -> Result<(), EngineError> {
    let mut script = String::from(SETUP);
    for bridge in bridges {
        let bridge = check_bridge(bridge)?;
        script.push_str(&format!("add element inet {TABLE} bridges {{ \"{bridge}\" }}\n"));
    }
    nft(&script).await
}

/// Takes a bridge out of the table (its network is gone). Already gone is fine.
pub async fn forget(bridge: &str) -> Result<(), EngineError> {
    let bridge = check_bridge(bridge)?;
    // `add` first so that `delete` cannot fail on an element that is not there.
    let script = format!(
        "{SETUP}add element inet {TABLE} bridges {{ \"{bridge}\" }}\n\
         add element inet {TABLE} same_bridge {{ \"{bridge}\" . \"{bridge}\" }}\n\
         delete element inet {TABLE} bridges {{ \"{bridge}\" }}\n\
         delete element inet {TABLE} same_bridge {{ \"{bridge}\" . \"{bridge}\" }}\n"
    );
    nft(&script).await
}

async fn nft(script: &str) -> Result<(), EngineError> {
    let failed = |detail: String| EngineError::Isolation { detail };
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run nft: {e} (install Debian's nftables package)")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await.map_err(|e| failed(format!("writing to nft: {e}")))?;
    }
    let out = child.wait_with_output().await.map_err(|e| failed(format!("waiting for nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(format!("nft failed: {}", String::from_utf8_lossy(&out.stderr).trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_interface_names_reach_the_script() {
        assert!(check_bridge("br-0123456789ab").is_ok());
        assert!(check_bridge("flvpc0").is_ok());
        for bad in ["", "br-0123456789abc", "a b", "x\"; flush ruleset", "eth0}", "a\nb"] {
            assert!(check_bridge(bad).is_err(), "{bad:?}");
        }
    }
}
