//! Helpers for outgoing connections, from Twisted's `twisted.internet.protocol`:
//!
//! | Twisted | torsion |
//! | --- | --- |
//! | `ClientCreator(reactor, P).connectTCP/connectUNIX/connectSSL` | [`ClientCreator::connect_tcp`], [`connect_unix`](ClientCreator::connect_unix), `connect_tls` (feature `tls`) → `Deferred<`[`ClientConnection`]`>` |
//! | `ReconnectingClientFactory` | [`ReconnectingClientFactory`] |

mod creator;
mod reconnect;

pub use creator::{ClientConnection, ClientCreator};
pub use reconnect::{ReconnectingClientFactory, RetryError};
