//! The [`Transport`] operations of a stream connection: what its protocol calls through
//! `cx.transport()` (writes, closing, flow control, addresses, socket options).

use super::*;

impl Transport for StreamTransport {
    fn write(&mut self, data: &[u8]) {
        if data.is_empty() || !self.can_write() {
            return;
        }
        if self.has_layer() {
            self.through_layer(|layer, wire| layer.write_plain(data, wire));
            self.check_marks();
        } else {
            self.send_wire(data);
        }
    }

    fn write_vectored(&mut self, bufs: &[&[u8]]) {
        if !self.can_write() {
            return;
        }
        if self.pending() || self.has_layer() {
            for b in bufs {
                self.write(b);
            }
            return;
        }
        let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let mut sent = loop {
            match self.stream.write_vectored(&slices) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if is_retry(&e) => {}
                Err(e) => {
                    self.end(Reason::lost(e));
                    return;
                }
            }
        };
        for b in bufs {
            if sent >= b.len() {
                sent -= b.len();
            } else {
                self.send_wire(&b[sent..]);
                sent = 0;
            }
        }
    }

    fn lose_connection(&mut self) {
        self.flags |= DISCONNECTING;
    }

    fn abort_connection(&mut self) {
        if self.has(CLOSED | ABORTED) {
            return;
        }
        self.flags |= ABORTED | DISCONNECTING;
        self.end(Reason::ConnectionAborted);
    }

    fn lose_write_connection(&mut self) {
        self.flags |= WRITE_SHUT_REQ;
    }

    fn pause_producing(&mut self) {
        self.flags |= PAUSED;
    }

    fn resume_producing(&mut self) {
        if self.has(PAUSED) {
            // Edge-triggered readiness may have come and gone while paused: read again.
            self.flags = (self.flags & !PAUSED) | READ_PENDING;
        }
    }

    fn register_producer(
        &mut self,
        producer: Box<dyn Producer>,
        streaming: bool,
    ) -> Result<(), RegisterProducerError> {
        if self.has(CLOSED | ABORTED) || self.lost() {
            return Err(RegisterProducerError::Disconnected(producer));
        }
        let marks_paused = self.has(MARKS_PAUSED);
        let flow = self.cold().flow.get_or_insert_with(|| {
            let mut f = Flow::default();
            if marks_paused {
                let _ = f.marks.update(usize::MAX);
            }
            f
        });
        if flow.registered {
            return Err(RegisterProducerError::AlreadyRegistered(producer));
        }
        flow.producer = Some(producer);
        flow.registered = true;
        flow.streaming = streaming;
        flow.producer_paused = false;
        flow.epoch = flow.epoch.wrapping_add(1);
        if !streaming {
            self.flags |= PULL_DUE;
        }
        Ok(())
    }

    fn unregister_producer(&mut self) {
        if let Some(flow) = self.flow_mut() {
            flow.producer = None;
            flow.registered = false;
            flow.epoch = flow.epoch.wrapping_add(1);
        }
        self.flags &= !PULL_DUE;
    }

    fn set_write_buffer_limits(&mut self, high: usize, low: usize) {
        let paused = self.has(MARKS_PAUSED);
        let flow = self.cold().flow.get_or_insert_with(Flow::default);
        let was_paused = paused || flow.marks.is_paused();
        flow.marks = WaterMarks::new(high, low);
        if was_paused {
            let _ = flow.marks.update(usize::MAX);
        }
        self.flags &= !MARKS_PAUSED;
        self.check_marks();
    }

    fn write_buffer_limits(&self) -> (usize, usize) {
        self.flow()
            .map_or(WaterMarks::default().limits(), |f| f.marks.limits())
    }

    fn start_tls(&mut self, layer: Box<dyn StreamLayer>) -> io::Result<()> {
        if self.has_layer() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "TLS is already started on this connection",
            ));
        }
        if !self.can_write() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        self.cold().layer = Some(layer);
        // A client layer speaks first: let it send its hello now.
        self.through_layer(|layer, wire| layer.write_plain(&[], wire));
        Ok(())
    }

    fn layer_info(&self) -> Option<LayerInfo> {
        self.cold.as_ref()?.layer.as_ref()?.info()
    }

    fn peer(&self) -> Address {
        unpack_v4(self.peer_v4)
            .or_else(|| self.cold.as_ref().and_then(|c| c.peer.clone()))
            .unwrap_or(Address::Unknown)
    }

    fn host(&self) -> Address {
        self.stream.local_address()
    }

    fn buffered_len(&self) -> usize {
        let layer = self
            .cold
            .as_ref()
            .and_then(|c| c.layer.as_ref())
            .map_or(0, |l| l.buffered_plaintext());
        self.wbuf().map_or(0, |b| b.len()) + layer
    }

    fn is_disconnecting(&self) -> bool {
        self.has(DISCONNECTING | ABORTED | CLOSED)
    }

    fn is_connected(&self) -> bool {
        !self.has(CLOSED | ABORTED) && !self.lost()
    }

    fn set_tcp_nodelay(&mut self, enabled: bool) -> io::Result<()> {
        self.stream.tcp()?.set_nodelay(enabled)
    }

    fn tcp_nodelay(&self) -> io::Result<bool> {
        self.stream.tcp()?.nodelay()
    }

    fn set_tcp_keepalive(&mut self, enabled: bool) -> io::Result<()> {
        socket2::SockRef::from(self.stream.tcp()?).set_keepalive(enabled)
    }

    fn tcp_keepalive(&self) -> io::Result<bool> {
        socket2::SockRef::from(self.stream.tcp()?).keepalive()
    }

    fn peer_credentials(&self) -> io::Result<Credentials> {
        self.stream.peer_credentials()
    }

    fn send_file_descriptor(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        if self.has_layer() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "file descriptors cannot be passed through a TLS layer",
            ));
        }
        if self.pending() {
            self.flush();
        }
        if !self.can_write() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        if self.pending() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        loop {
            match self.stream.send_with_fd(&[0], fd) {
                Ok(_) => return Ok(()),
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
