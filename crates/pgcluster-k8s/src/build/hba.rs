//! TEMPORARY shim until pgcluster-core's pg_hba renderer lands; replaced by a call to core.

use pgcluster_core::ValidatedCluster;

/// pg_hba.conf of the cluster.
pub fn pg_hba_conf(_cluster: &ValidatedCluster) -> String {
    "# placeholder\n".to_owned()
}

/// Whether a network is private.
pub fn is_private_net(net: &ipnet::IpNet) -> bool {
    match net {
        ipnet::IpNet::V4(n) => n.addr().is_private(),
        ipnet::IpNet::V6(_) => false,
    }
}
