//! The [`Channel`] operations of the file channel: reserve, put, take, commit, rollback, close.
//! Every commit is one record appended to the log (invariant 3 of the `file` module header).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::crypto;
use super::format::{self, FRAME_HEADER_LEN, Kind, PutRecord};
use super::{FileChannel, FileChannelMetrics, Inflight, Inner, Ptr};
use crate::channels::{Channel, ChannelError, Reservation, TakeTicket};
use crate::event::Event;
use crate::metrics::{ChannelCounters, MetricSet};

impl Inner {
    /// One frame's event, decrypted first when it is encrypted. A frame whose key is not
    /// configured fails the take (nothing is dropped); a malformed one is damaged (`None`).
    fn decode(&self, data: Bytes) -> Result<Option<Event>, ChannelError> {
        if !crypto::is_encrypted(&data) {
            return Ok(format::decode_event(data));
        }
        let io = |message: String| ChannelError::Io {
            channel: self.name.clone(),
            message,
        };
        let Some(enc) = &self.config.encryption else {
            return Err(io(
                "the log holds encrypted events but no encryption.* keys are configured; \
                 configure the keys they were written with"
                    .into(),
            ));
        };
        match enc.decrypt(&data) {
            Ok(plain) => Ok(format::decode_event(Bytes::from(plain))),
            Err(e @ crypto::DecryptError::UnknownKey(_)) => Err(io(format!(
                "an event is {e}; keep old keys listed until their events are taken"
            ))),
            Err(crypto::DecryptError::Malformed) => Ok(None),
        }
    }

    /// Reads and verifies the events of `ptrs`, coalescing adjacent frames into one read.
    /// Returns the events and the pointers whose frames are damaged.
    fn read_events(
        &self,
        ptrs: &[Ptr],
        files: &[Arc<File>],
        out: &mut Vec<Event>,
    ) -> Result<Vec<Ptr>, ChannelError> {
        let mut bad = Vec::new();
        let mut i = 0;
        while i < ptrs.len() {
            let start = u64::from(ptrs[i].off);
            let mut end = start + FRAME_HEADER_LEN as u64 + u64::from(ptrs[i].len);
            let mut j = i + 1;
            while j < ptrs.len()
                && ptrs[j].seg == ptrs[i].seg
                && u64::from(ptrs[j].off) == end
                && end - start < 8 << 20
            {
                end += FRAME_HEADER_LEN as u64 + u64::from(ptrs[j].len);
                j += 1;
            }
            let mut buf = vec![0u8; (end - start) as usize];
            files[i].read_exact_at(&mut buf, start).map_err(|e| {
                self.failed(
                    format!("cannot read segment log-{} at offset {start}", ptrs[i].seg),
                    e,
                )
            })?;
            let buf = Bytes::from(buf);
            for p in &ptrs[i..j] {
                let rel = (u64::from(p.off) - start) as usize;
                let data_ok =
                    format::frame_data(&buf[rel..]).is_some_and(|d| d.len() == p.len as usize);
                let event = match data_ok {
                    true => {
                        let from = rel + FRAME_HEADER_LEN;
                        self.decode(buf.slice(from..from + p.len as usize))?
                    }
                    false => None,
                };
                match event {
                    Some(e) => out.push(e),
                    None => {
                        self.stats.corrupt_records.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(channel = %self.name, segment = p.seg, offset = p.off,
                            seq = p.seq, "Damaged event found on take; dropped.");
                        bad.push(*p);
                    }
                }
            }
            i = j;
        }
        Ok(bad)
    }
}

impl Channel for FileChannel {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn transaction_capacity(&self) -> usize {
        self.inner.config.transaction_capacity
    }

    fn counters(&self) -> &Arc<ChannelCounters> {
        &self.inner.counters
    }

    fn metric_set(&self) -> Arc<dyn MetricSet> {
        Arc::new(FileChannelMetrics {
            counters: self.inner.counters.clone(),
            stats: self.inner.stats.clone(),
        })
    }

    fn reserve(&self, events: usize, bytes: u64) -> Result<Reservation, ChannelError> {
        let inner = &self.inner;
        if let Some(f) = inner.failure() {
            return Err(inner.failure_err(f));
        }
        if let Err(e) = inner.check_space(bytes, events) {
            inner.stats.put_errors.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        let deadline = Instant::now() + inner.config.keep_alive;
        let mut st = inner.state.lock();
        loop {
            if st.closed {
                return Err(inner.closed_err());
            }
            let used = st.queue.len() + st.held;
            if used + events <= inner.config.capacity {
                st.held += events;
                inner.publish_size(&st);
                return Ok(Reservation {
                    events,
                    bytes,
                    part: 0,
                    waited: Duration::ZERO,
                });
            }
            if inner.not_full.wait_until(&mut st, deadline).timed_out() {
                return Err(ChannelError::Full {
                    channel: inner.name.clone(),
                    detail: format!("{used} of capacity {} events", inner.config.capacity),
                    keep_alive: inner.config.keep_alive,
                });
            }
        }
    }

    fn commit_put(&self, reservation: Reservation, events: Vec<Event>) -> Result<(), ChannelError> {
        let inner = &self.inner;
        if events.is_empty() {
            self.release(reservation);
            return Ok(());
        }
        let PutRecord { mut buf, frames } =
            PutRecord::encode(&events, inner.config.encryption.as_ref()).map_err(|e| {
                ChannelError::Io {
                    channel: inner.name.clone(),
                    message: format!("cannot encrypt the events: {e}"),
                }
            })?;
        let n = events.len();
        let held = reservation.events;
        let result = inner.append(
            Kind::Put,
            &mut buf,
            |b, log| format::seal_put(b, n as u32, log.next_seq),
            |log, seg, off, st| {
                let first = log.next_seq;
                log.next_seq += n as u64;
                st.held -= held;
                st.queue
                    .extend(frames.iter().enumerate().map(|(i, (rel, len))| Ptr {
                        seq: first + i as u64,
                        seg,
                        off: (off + u64::from(*rel)) as u32,
                        len: *len,
                    }));
                if let Some(s) = st.segments.get_mut(&seg) {
                    s.live += n as u64;
                }
                inner.publish_size(st);
            },
        );
        let pos = match result {
            Ok(pos) => pos,
            Err(e) => {
                inner.stats.put_errors.fetch_add(1, Ordering::Relaxed);
                self.release(reservation);
                return Err(e);
            }
        };
        inner.not_empty.notify_all();
        if inner.config.fsync_per_transaction {
            inner.sync_to(pos).inspect_err(|_| {
                inner.stats.put_errors.fetch_add(1, Ordering::Relaxed);
            })?;
        }
        Ok(())
    }

    fn release(&self, reservation: Reservation) {
        let mut st = self.inner.state.lock();
        st.held -= reservation.events;
        self.inner.publish_size(&st);
        drop(st);
        self.inner.not_full.notify_all();
    }

    fn take(
        &self,
        max: usize,
        wait: Duration,
        out: &mut Vec<Event>,
    ) -> Result<TakeTicket, ChannelError> {
        let inner = &self.inner;
        let (ticket, ptrs, files) = {
            let mut st = inner.state.lock();
            if st.closed {
                return Err(inner.closed_err());
            }
            if st.queue.is_empty() && !wait.is_zero() {
                let _ = inner.not_empty.wait_for(&mut st, wait);
            }
            let n = max.min(st.queue.len());
            if n == 0 {
                return Ok(TakeTicket(0));
            }
            let ptrs: Vec<Ptr> = st.queue.drain(..n).collect();
            let mut files = Vec::with_capacity(n);
            for p in &ptrs {
                match st.segments.get(&p.seg) {
                    Some(s) => files.push(s.file.clone()),
                    None => {
                        let seg = p.seg;
                        for p in ptrs.iter().rev() {
                            st.queue.push_front(*p);
                        }
                        return Err(inner.io_err(format!("segment log-{seg} is not open")));
                    }
                }
            }
            st.held += n;
            let ticket = st.next_ticket;
            st.next_ticket += 1;
            st.inflight.insert(
                ticket,
                Inflight {
                    good: ptrs.clone(),
                    bad: Vec::new(),
                },
            );
            (ticket, ptrs, files)
        };
        let before = out.len();
        match inner.read_events(&ptrs, &files, out) {
            Ok(bad) if bad.is_empty() => {}
            Ok(bad) => {
                let mut st = inner.state.lock();
                if let Some(t) = st.inflight.get_mut(&ticket) {
                    t.good.retain(|p| !bad.contains(p));
                    t.bad = bad;
                }
            }
            Err(e) => {
                out.truncate(before);
                inner.stats.take_errors.fetch_add(1, Ordering::Relaxed);
                self.rollback_take(TakeTicket(ticket), Vec::new());
                return Err(e);
            }
        }
        Ok(TakeTicket(ticket))
    }

    fn commit_take(&self, ticket: &TakeTicket, _events: &[Event]) -> Result<(), ChannelError> {
        let inner = &self.inner;
        if ticket.0 == 0 {
            return Ok(());
        }
        let mut seqs: Vec<u64> = {
            let st = inner.state.lock();
            match st.inflight.get(&ticket.0) {
                Some(t) => t.good.iter().chain(&t.bad).map(|p| p.seq).collect(),
                None => return Ok(()),
            }
        };
        let mut record = format::take_record(&mut seqs, ticket.0);
        let result = inner.append(
            Kind::Take,
            &mut record,
            |_, _| {},
            |_, _, _, st| {
                if let Some(t) = st.inflight.remove(&ticket.0) {
                    st.held -= t.good.len() + t.bad.len();
                    for p in t.good.iter().chain(&t.bad) {
                        if let Some(s) = st.segments.get_mut(&p.seg) {
                            s.live -= 1;
                        }
                    }
                }
                inner.publish_size(st);
            },
        );
        let pos = result.inspect_err(|_| {
            inner.stats.take_errors.fetch_add(1, Ordering::Relaxed);
        })?;
        inner.not_full.notify_all();
        if inner.config.fsync_per_transaction {
            inner.sync_to(pos).inspect_err(|_| {
                inner.stats.take_errors.fetch_add(1, Ordering::Relaxed);
            })?;
        }
        Ok(())
    }

    fn rollback_take(&self, ticket: TakeTicket, _events: Vec<Event>) {
        let inner = &self.inner;
        let mut st = inner.state.lock();
        let Some(t) = st.inflight.remove(&ticket.0) else {
            return;
        };
        st.held -= t.good.len() + t.bad.len();
        for p in t.good.iter().rev() {
            st.queue.push_front(*p);
        }
        // Damaged events are not put back; the next checkpoint forgets them.
        for p in &t.bad {
            if let Some(s) = st.segments.get_mut(&p.seg) {
                s.live -= 1;
            }
        }
        inner.publish_size(&st);
        drop(st);
        inner.not_empty.notify_all();
        inner.not_full.notify_all();
    }

    fn size(&self) -> usize {
        let st = self.inner.state.lock();
        st.queue.len() + st.held
    }

    fn close(&self) {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stop_worker();
        inner.state.lock().closed = true;
        inner.not_full.notify_all();
        inner.not_empty.notify_all();
        let result = if inner.config.checkpoint_on_close {
            inner.checkpoint()
        } else {
            inner.sync_to(inner.written())
        };
        if let Err(e) = result {
            tracing::warn!(channel = %inner.name, error = %e,
                "Final checkpoint failed; the next start replays the log.");
        }
        inner.log.lock().open = false;
        inner.locks.lock().clear();
        inner.counters.stopped();
    }
}
