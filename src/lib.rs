//! # torsion
//!
//! Twisted's event-driven networking model (reactor, protocols, factories, delayed calls)
//! in Rust, directly on the operating system's readiness API through `mio`.
//!
//! | Twisted | torsion |
//! | --- | --- |
//! | `reactor.run()` / `stop()` | [`Reactor::run`], [`Reactor::stop`] |
//! | `reactor.callLater` → `IDelayedCall` | [`Reactor::call_later`] → [`DelayedCall`] |
//! | `callWhenRunning`, `addSystemEventTrigger` | [`Reactor::call_when_running`], [`Reactor::add_system_event_trigger`] |
//! | `callFromThread`, `callInThread` | [`ReactorHandle::call_from_thread`], [`Reactor::call_in_thread`] |
//! | `listenTCP`, `connectTCP` | [`Reactor::listen_tcp`], [`Reactor::connect_tcp`] |
//! | `listenUNIX`, `connectUNIX`, `sendFileDescriptor` | [`Reactor::listen_unix`], [`Reactor::connect_unix`], [`Transport::send_file_descriptor`] |
//! | `Protocol` | [`Protocol`] (callbacks get a [`Cx`]) |
//! | `Factory`, `ClientFactory` | [`Factory`], [`ClientFactory`] |
//! | `IConnector` | [`Connector`] |
//! | `ClientCreator`, `ReconnectingClientFactory` | [`ClientCreator`], [`ReconnectingClientFactory`] |
//! | `ITransport` | [`Transport`] |
//! | `IPushProducer` / `IPullProducer`, `registerProducer` | [`Producer`], [`Transport::register_producer`] |
//! | `proto_helpers.StringTransport` | [`testing::StringTransport`] |
//! | `basic.LineReceiver`, `NetstringReceiver`, `Int32StringReceiver` | [`protocols::basic`] |
//! | `Deferred`, `DeferredList`, `gatherResults`, `maybeDeferred` | [`defer`] |
//! | `ensureDeferred`, `task.react`, `deferLater`, `LoopingCall` | [`Reactor::spawn`], [`react`], [`task`] |
//! | `deferToThread`, `blockingCallFromThread` | [`defer_to_thread`], [`ReactorHandle::blocking_call_from_thread`] |
//! | `task.Clock` | [`testing::Clock`] |
//! | `listenSSL`, `connectSSL`, `startTLS` (feature `tls`) | `Reactor::listen_tls`, `Reactor::connect_tls`, `tls` |
//!
//! ```no_run
//! use std::rc::Rc;
//! use torsion::{factory::from_fn, Cx, Protocol, Reactor};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
//!         cx.transport().write(data);
//!     }
//! }
//!
//! let reactor = Reactor::new()?;
//! reactor.listen_tcp(8000, Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>))))?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod address;
mod buffer;
pub mod client;
pub mod defer;
mod error;
pub mod factory;
mod handle;
pub mod layer;
pub mod producer;
mod protocol;
pub mod protocols;
mod rc_pool;
pub mod reactor;
mod reason;
pub mod task;
pub mod tcp;
pub mod testing;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
pub mod unix;

pub use address::Address;
pub use client::{ClientConnection, ClientCreator, ReconnectingClientFactory};
pub use defer::{Deferred, Failure, FailureKind};
pub use error::{
    CannotListen, ConnectError, ConnectorError, ReactorError, ReactorGone, TimerError,
};
pub use factory::{ClientFactory, Factory};
pub use handle::ConnectionHandle;
pub use producer::{Producer, RegisterProducerError};
pub use protocol::{Cx, CxParts, Protocol};
pub use reactor::{DelayedCall, Phase, Reactor, ReactorBuilder, ReactorHandle, TriggerId};
pub use reason::Reason;
pub use task::{defer_to_thread, react, sleep};
pub use tcp::connector::Connector;
pub use tcp::{ConnectorState, Destination, ListeningPort, TcpConnectOptions, TcpListenOptions};
pub use transport::Transport;
pub use unix::{Credentials, UnixConnectOptions, UnixListenOptions};
