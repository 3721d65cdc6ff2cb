//! The proxy's side of peer-aware coalescing: before a fill goes upstream, the owner of the
//! key among this tier's peers is asked instead (one hop). A request that a peer sent
//! (marked with [`PEER_HEADER`]) is never passed on to another peer. When the owner is this
//! node, is down, fails or is slow, the fill goes to this node's own upstream.

use super::{Ctx, Proxy};
use crate::cluster::{Cluster, Peer, PEER_HEADER};
use crate::store::ObjectMeta;
use http::Response;
use hyper::body::Incoming;
use std::sync::Arc;

/// The peer a fill's response came from, to read its body with `peer_timeout` and to mark
/// it down when the body breaks off.
pub(super) struct FromPeer {
    pub cluster: Arc<Cluster>,
    pub peer: Arc<Peer>,
}

impl Proxy {
    /// Asks the key's owner, when a peer owns it; `None` means "go upstream yourself".
    /// The second value names where the response came from, for logs; the third is the peer.
    pub(super) async fn ask_owner(
        &self,
        ctx: &Ctx,
        primary: &str,
        stored: Option<&ObjectMeta>,
    ) -> Option<(Response<Incoming>, String, FromPeer)> {
        if ctx.parts.headers.contains_key(PEER_HEADER) {
            return None;
        }
        let cluster = self.cluster.load_full()?;
        let peer = cluster.owner(primary)?;
        match cluster
            .ask(&peer, &ctx.parts, ctx.viewer.addr.ip(), &self.via, stored)
            .await
        {
            Ok(resp) => {
                let name = format!("peer {}", peer.name);
                Some((resp, name, FromPeer { cluster, peer }))
            }
            Err(e) => {
                tracing::debug!(error = %e, key = primary, "going upstream without the owner");
                None
            }
        }
    }
}
