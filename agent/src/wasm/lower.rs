//! Lowers a batch of events straight into the guest's memory.
//!
//! The generated bindings take a `Batch` of owned buffers: the host copies every body into a
//! `Vec<u8>` and wasmtime copies that vector into the guest's memory, one large `memcpy` per
//! list. [`BatchRef`] has the same canonical-ABI type as `record batch` but is lowered by
//! writing each event's body, end offset and headers straight into the memory the guest's
//! `cabi_realloc` returned: one copy instead of two, no host allocation per batch, and
//! per-body copies instead of one large `memcpy` whose speed depended on how the guest's
//! allocator happened to align the destination (bench_wasm: the C filter went from 6 M to
//! over 20 M events/s with whole bodies).
//!
//! This implements wasmtime's `ComponentType`/`Lower` traits by hand, as `#[derive(Lower)]`
//! does (their items are `#[doc(hidden)]`, pinned here by the exact wasmtime version). The
//! layout must match `wit/pipeline.wit`'s `record batch`; `typecheck` checks it against the
//! component when the instance is created, so a mismatch is an error there, never a bad write.
//! The unsafe parts are the trait impls and `TypedFunc::new_unchecked` on a function that
//! `BatchFn::new` type-checked with the same types.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext, typecheck_record,
};
use wasmtime::component::{
    ComponentNamedList, ComponentType, Func, Instance, Lift, Lower, TypedFunc,
};
use wasmtime::{Store, ValRaw};

use super::bindings::Verdicts;
use super::guest::Hook;
use crate::event::Event;

/// A batch whose bodies or headers pass 4 GiB: its offsets do not fit `record batch`'s u32s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("batch larger than 4 GiB")]
pub struct BatchTooLarge;

/// `record batch` borrowed from the host's events (bodies cut to `body-prefix` bytes).
#[derive(Clone, Copy)]
pub(crate) struct BatchRef<'a> {
    events: &'a [Event],
    limit: usize,
    body_len: usize,
    header_len: usize,
}

impl<'a> BatchRef<'a> {
    /// Fails only when the batch exceeds 4 GiB (offsets are u32).
    pub(crate) fn new(
        events: &'a [Event],
        body_prefix: Option<usize>,
    ) -> Result<Self, BatchTooLarge> {
        let limit = body_prefix.unwrap_or(usize::MAX);
        let mut body_len = 0usize;
        let mut header_len = 0usize;
        for e in events {
            body_len += e.body.len().min(limit);
            if !e.headers.is_empty() {
                header_len += e.headers.byte_len() + 8 * e.headers.len();
            }
        }
        if body_len > u32::MAX as usize || header_len > u32::MAX as usize {
            return Err(BatchTooLarge);
        }
        Ok(Self {
            events,
            limit,
            body_len,
            header_len,
        })
    }

    /// Allocates the four lists in the guest and fills them; returns (pointer, length) pairs.
    fn lower_lists<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<[usize; 8]> {
        let n = self.events.len();
        let ends_size = n
            .checked_mul(4)
            .ok_or_else(|| wasmtime::format_err!("batch too large"))?;
        let bodies = self.lower_bodies(cx)?;
        let body_ends = self.lower_body_ends(cx, ends_size)?;
        let (headers, header_ends) = self.lower_headers(cx, ends_size)?;
        Ok([
            bodies,
            self.body_len,
            body_ends,
            n,
            headers,
            self.header_len,
            header_ends,
            n,
        ])
    }

    /// `bodies`: every (cut) body, back to back.
    fn lower_bodies<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<usize> {
        let bodies = cx.realloc(0, 0, 1, self.body_len)?;
        let mut dst = &mut cx.as_slice_mut()[bodies..bodies + self.body_len];
        for e in self.events {
            let body = &e.body[..e.body.len().min(self.limit)];
            let (head, rest) = dst.split_at_mut(body.len());
            head.copy_from_slice(body);
            dst = rest;
        }
        Ok(bodies)
    }

    /// `body-ends`: each body's end offset in `bodies`.
    fn lower_body_ends<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        ends_size: usize,
    ) -> wasmtime::Result<usize> {
        let body_ends = cx.realloc(0, 0, 4, ends_size)?;
        let dst = &mut cx.as_slice_mut()[body_ends..body_ends + ends_size];
        let mut end = 0u32;
        for (slot, e) in dst.chunks_exact_mut(4).zip(self.events) {
            // Fits: the total was checked against u32::MAX in `new`.
            end += e.body.len().min(self.limit) as u32;
            slot.copy_from_slice(&end.to_le_bytes());
        }
        Ok(body_ends)
    }

    /// `headers` and `header-ends`: each event's encoded headers and their end offsets.
    fn lower_headers<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        ends_size: usize,
    ) -> wasmtime::Result<(usize, usize)> {
        let headers = cx.realloc(0, 0, 1, self.header_len)?;
        let header_ends = cx.realloc(0, 0, 4, ends_size)?;
        if self.header_len > 0
            && headers < header_ends + ends_size
            && header_ends < headers + self.header_len
        {
            wasmtime::bail!("the guest's cabi_realloc returned overlapping blocks");
        }
        let mem = cx.as_slice_mut();
        if self.header_len == 0 {
            mem[header_ends..header_ends + ends_size].fill(0);
            return Ok((headers, header_ends));
        }
        let (before, after) = mem.split_at_mut(header_ends.max(headers));
        // Two disjoint blocks (checked above): borrow each from its side of the split.
        let (hdst, edst) = if headers < header_ends {
            (
                &mut before[headers..headers + self.header_len],
                &mut after[..ends_size],
            )
        } else {
            (
                &mut after[..self.header_len],
                &mut before[header_ends..header_ends + ends_size],
            )
        };
        let mut at = 0usize;
        for (slot, e) in edst.chunks_exact_mut(4).zip(self.events) {
            for (k, v) in e.headers.iter() {
                for part in [k.as_bytes(), v.as_bytes()] {
                    hdst[at..at + 4].copy_from_slice(&(part.len() as u32).to_le_bytes());
                    hdst[at + 4..at + 4 + part.len()].copy_from_slice(part);
                    at += 4 + part.len();
                }
            }
            slot.copy_from_slice(&(at as u32).to_le_bytes());
        }
        Ok((headers, header_ends))
    }
}

const LIST: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

// SAFETY: `Lower` is eight `ValRaw`s, the flat form of a record of four lists, and `ABI` is
// that record's; `typecheck` accepts only `record batch`'s shape (four lists of u8/u32 in this
// order), so the lowering below writes what the guest reads.
unsafe impl ComponentType for BatchRef<'_> {
    type Lower = [ValRaw; 8];

    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::record_static(&[LIST, LIST, LIST, LIST]);

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        typecheck_record(
            ty,
            types,
            &[
                ("bodies", <[u8] as ComponentType>::typecheck),
                ("body-ends", <[u32] as ComponentType>::typecheck),
                ("headers", <[u8] as ComponentType>::typecheck),
                ("header-ends", <[u32] as ComponentType>::typecheck),
            ],
        )
    }
}

// SAFETY: writes every `ValRaw` of `dst` (flat form) or the record's 32 bytes at `offset`
// (memory form); list contents go only to blocks the guest's realloc returned, sliced with
// bounds checks.
unsafe impl Lower for BatchRef<'_> {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 8]>,
    ) -> wasmtime::Result<()> {
        let words = self.lower_lists(cx)?;
        // Pointers and lengths are written as i64 as wasmtime's own lowering does: a 32-bit
        // guest reads the low half.
        dst.write(words.map(|w| ValRaw::i64(w as i64)));
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let words = self.lower_lists(cx)?;
        for (i, w) in words.into_iter().enumerate() {
            let w = u32::try_from(w).map_err(|_| wasmtime::format_err!("pointer out of range"))?;
            *cx.get::<4>(offset + 4 * i) = w.to_le_bytes();
        }
        Ok(())
    }
}

/// A live instance's batch function (`intercept`, `route` or `select`), type-checked against
/// [`BatchRef`] and the hook's result type once, when the instance is created.
#[derive(Clone, Copy)]
pub(crate) struct BatchFn {
    func: Func,
    hook: Hook,
}

impl BatchFn {
    pub(crate) fn new<T>(
        store: &mut Store<T>,
        instance: &Instance,
        hook: Hook,
    ) -> wasmtime::Result<Self> {
        let name = match hook {
            Hook::Interceptor => "intercept",
            Hook::Router => "route",
            Hook::SinkSelector => "select",
        };
        let func = instance
            .get_func(&mut *store, name)
            .ok_or_else(|| wasmtime::format_err!("the component exports no `{name}`"))?;
        match hook {
            Hook::Interceptor => {
                func.typed::<(BatchRef<'static>,), (Verdicts,)>(&*store)?;
            }
            Hook::Router => {
                func.typed::<(BatchRef<'static>,), (Vec<u64>,)>(&*store)?;
            }
            Hook::SinkSelector => {
                func.typed::<(BatchRef<'static>,), (Vec<u32>,)>(&*store)?;
            }
        }
        Ok(Self { func, hook })
    }

    /// `intercept(events)`.
    pub(crate) fn intercept<T>(
        &self,
        store: &mut Store<T>,
        batch: BatchRef<'_>,
    ) -> wasmtime::Result<Verdicts> {
        // SAFETY: `new` checked an interceptor's function against (BatchRef,) -> (Verdicts,).
        unsafe { self.call(Hook::Interceptor, store, batch) }
    }

    /// `route(events)`: a channel mask per event.
    pub(crate) fn route<T>(
        &self,
        store: &mut Store<T>,
        batch: BatchRef<'_>,
    ) -> wasmtime::Result<Vec<u64>> {
        // SAFETY: `new` checked a router's function against (BatchRef,) -> (Vec<u64>,).
        unsafe { self.call(Hook::Router, store, batch) }
    }

    /// `select(events)`: a sink index per event.
    pub(crate) fn select<T>(
        &self,
        store: &mut Store<T>,
        batch: BatchRef<'_>,
    ) -> wasmtime::Result<Vec<u32>> {
        // SAFETY: `new` checked a sink selector's function against (BatchRef,) -> (Vec<u32>,).
        unsafe { self.call(Hook::SinkSelector, store, batch) }
    }

    /// Calls the function as `(BatchRef,) -> (R,)` if it belongs to a `want` guest.
    ///
    /// # Safety
    /// `R` must be the result type `new` checked for `want`.
    unsafe fn call<T, R>(
        &self,
        want: Hook,
        store: &mut Store<T>,
        batch: BatchRef<'_>,
    ) -> wasmtime::Result<R>
    where
        (R,): ComponentNamedList + Lift + Send + Sync + 'static,
    {
        self.check(want)?;
        // SAFETY: the function was type-checked with these parameter types and, by this
        // function's contract, this result type.
        let f = unsafe { TypedFunc::<(BatchRef<'_>,), (R,)>::new_unchecked(self.func) };
        Ok(f.call(store, (batch,))?.0)
    }

    fn check(&self, want: Hook) -> wasmtime::Result<()> {
        if self.hook != want {
            wasmtime::bail!("a {:?} guest has no {want:?} function", self.hook);
        }
        Ok(())
    }
}
