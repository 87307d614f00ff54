//! An in-memory byte pipe between a reader session and a server session, moved by hand:
//! the tests decide how many bytes cross at a time and in which order.

use atek_log::sync::{ReaderEvent, ReaderSession, ServerEvent, ServerSession, Source};
use atek_log::{Replica, Storage};

/// A reader and a server joined by two byte queues.
#[derive(Debug)]
pub struct Link {
    pub reader: ReaderSession,
    pub server: ServerSession,
    /// Bytes sent by the reader, not yet delivered to the server.
    pub to_server: Vec<u8>,
    /// Bytes sent by the server, not yet delivered to the reader.
    pub to_reader: Vec<u8>,
    pub events: Vec<ReaderEvent>,
    pub server_events: Vec<ServerEvent>,
}

impl Link {
    pub fn new<S: Storage>(replica: &Replica<S>) -> Self {
        Self {
            reader: ReaderSession::new(replica),
            server: ServerSession::new(replica.log_id()),
            to_server: Vec::new(),
            to_reader: Vec::new(),
            events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// Moves every frame the reader has to send into the pipe.
    pub fn reader_out(&mut self) -> usize {
        let mut n = 0;
        while let Some(frame) = self.reader.poll_transmit() {
            n += frame.len();
            self.to_server.extend_from_slice(&frame);
        }
        n
    }

    /// Moves up to `frames` frames the server makes into the pipe.
    pub fn server_out(&mut self, source: &impl Source, frames: usize) -> usize {
        let mut n = 0;
        for _ in 0..frames {
            match self.server.poll_transmit(source) {
                Some(frame) => {
                    n += frame.len();
                    self.to_reader.extend_from_slice(&frame);
                }
                None => break,
            }
        }
        self.collect();
        n
    }

    /// Delivers up to `n` bytes to the server.
    pub fn deliver_to_server(&mut self, n: usize) -> usize {
        let n = n.min(self.to_server.len());
        let bytes: Vec<u8> = self.to_server.drain(..n).collect();
        self.server.handle_input(&bytes);
        self.collect();
        n
    }

    /// Delivers up to `n` bytes to the reader.
    pub fn deliver_to_reader<S: Storage>(&mut self, n: usize, replica: &mut Replica<S>) -> usize {
        let n = n.min(self.to_reader.len());
        let bytes: Vec<u8> = self.to_reader.drain(..n).collect();
        self.reader.handle_input(&bytes, replica);
        self.collect();
        n
    }

    /// Moves everything both ways until neither side has anything more to say.
    pub fn settle<S: Storage>(&mut self, source: &impl Source, replica: &mut Replica<S>) {
        loop {
            let mut moved = self.reader_out();
            moved += self.deliver_to_server(usize::MAX);
            moved += self.server_out(source, usize::MAX);
            moved += self.deliver_to_reader(usize::MAX, replica);
            if moved == 0 {
                break;
            }
        }
    }

    /// Takes the sessions' events.
    pub fn collect(&mut self) {
        while let Some(e) = self.reader.poll_event() {
            self.events.push(e);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
    }

    /// The reader's close reason, if it closed.
    pub fn reader_closed(&self) -> Option<&atek_log::sync::CloseReason> {
        self.reader.closed()
    }
}
