//! Importers: attach, detach, map and unmap.
//!
//! Analogous to Linux's `dma_buf_dynamic_attach()`, `dma_buf_detach()`,
//! `dma_buf_map_attachment()` and `dma_buf_unmap_attachment()` (drivers/dma-buf/dma-buf.c)
//! combined with the checks of the exporter's attach and map ops (spec §2.5). The "sg table" is the buffer's range list.

use std::fmt;
use std::sync::Arc;

use crate::buffer::{AttachmentEntry, ResvState};
use crate::{DmaBuf, Error, PhysVec, ResvGuard, Status};

/// Importer side of an attachment. Analogous to `struct dma_buf_attach_ops` plus the
/// attachment's `peer2peer` flag.
///
/// The buffer keeps only a weak reference to the importer: the importer owns its
/// [`Attachment`] and [`ImporterMapping`]s. An importer dropped while still attached is
/// skipped by revoke; its mappings unmap when they are dropped.
pub trait Importer: Send + Sync + fmt::Debug {
    /// Whether the importer can do peer-to-peer DMA (the attachment's `peer2peer`).
    fn peer2peer(&self) -> bool {
        true
    }

    /// Whether the importer unmaps in bounded time when told to, i.e. has a working
    /// invalidate callback. Analogous to `dma_buf_attach_revocable()`.
    fn revocable(&self) -> bool {
        true
    }

    /// The buffer is being revoked: drop every mapping of `attachment` soon.
    ///
    /// Called with the buffer's `resv` held (`resv`). The importer may unmap right here with
    /// [`ImporterMapping::unmap_locked`], or later from any thread with
    /// [`ImporterMapping::unmap`]; the revoke waits either way. Anything else that takes
    /// `resv` deadlocks here: [`Attachment::map`], [`ImporterMapping::unmap`], dropping an
    /// [`ImporterMapping`] or an [`Attachment`], [`DmaBuf::attachments`].
    /// Analogous to `dma_buf_attach_ops.invalidate_mappings` (formerly `move_notify`).
    fn invalidate_mappings(&self, attachment: &AttachmentRef<'_>, resv: &mut ResvGuard<'_>);
}

/// The view of an attachment given to [`Importer::invalidate_mappings`].
#[derive(Debug, Clone, Copy)]
pub struct AttachmentRef<'a> {
    pub(crate) buf: &'a DmaBuf,
    pub(crate) id: u64,
}

impl<'a> AttachmentRef<'a> {
    /// The attached buffer.
    #[must_use]
    pub fn buffer(&self) -> &'a DmaBuf {
        self.buf
    }

    /// The attachment's id, equal to [`Attachment::id`] and [`ImporterMapping::attachment_id`].
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// An importer's attachment to a buffer. Dropping it detaches (`dma_buf_detach()`).
///
/// Holds the buffer alive. Mappings made through it hold the buffer themselves, so
/// detaching with mappings still live is allowed; they stay counted until unmapped.
#[derive(Debug)]
pub struct Attachment {
    buf: Arc<DmaBuf>,
    id: u64,
}

/// One importer mapping: the importer's "sg table" of the buffer.
///
/// Counted by the buffer from map to unmap; a revoke waits until the count is zero.
/// Dropping it unmaps (taking `resv`) if [`ImporterMapping::unmap`] or
/// [`ImporterMapping::unmap_locked`] was not called.
#[derive(Debug)]
pub struct ImporterMapping {
    buf: Arc<DmaBuf>,
    attachment: u64,
    mapped: bool,
}

impl DmaBuf {
    /// `dma_buf_dynamic_attach()`—attaches an importer.
    ///
    /// # Errors
    ///
    /// Checked in this order (kernel: the exporter's attach op, spec §2.5):
    /// - `EOPNOTSUPP` ([`Error::NotPeerToPeer`]): the importer cannot do peer-to-peer DMA.
    /// - `ENODEV` ([`Error::Revoked`]): the buffer is revoked (checked under `resv`).
    /// - `EOPNOTSUPP` ([`Error::NotRevocable`]): the importer cannot be revoked.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use dmabuf::*;
    /// # #[derive(Debug)] struct Exporter;
    /// # impl DmaBufOps for Exporter {
    /// #     fn release(&self, _buf: &DmaBuf) {}
    /// #     fn as_any(&self) -> &dyn std::any::Any { self }
    /// # }
    /// # let buf = DmaBuf::export(ExportInfo { ops: Arc::new(Exporter),
    /// #     ranges: vec![PhysVec { paddr: page::PhysAddr(0), len: 0x1000 }], name: None,
    /// #     mode: AccessMode::ReadWrite, initial_status: Status::Ok })?;
    /// /// An importer that gives its mappings up only when dropped.
    /// #[derive(Debug)]
    /// struct Lazy;
    /// impl Importer for Lazy {
    ///     fn invalidate_mappings(&self, _: &AttachmentRef<'_>, _: &mut ResvGuard<'_>) {}
    /// }
    ///
    /// let importer: Arc<dyn Importer> = Arc::new(Lazy);
    /// let attachment = buf.attach(Arc::clone(&importer))?;
    /// let mapping = attachment.map()?;
    /// assert_eq!(mapping.ranges(), buf.ranges());
    /// drop(mapping); // unmaps
    ///
    /// assert_eq!(buf.set_status(Status::TempRevoked)?, Transition::Revoked);
    /// assert_eq!(attachment.map().unwrap_err().errno(), rustix::io::Errno::NODEV);
    /// # Ok::<(), dmabuf::Error>(())
    /// ```
    pub fn attach(self: &Arc<Self>, importer: Arc<dyn Importer>) -> Result<Attachment, Error> {
        // Ask the importer before locking: its answers are plain properties.
        let peer2peer = importer.peer2peer();
        let revocable = importer.revocable();
        if !peer2peer {
            return Err(Error::NotPeerToPeer);
        }
        let mut state = self.lock_state();
        // Under resv: a revoke either sees this attachment and invalidates it, or has
        // already published its status and we fail here.
        if self.status() != Status::Ok {
            return Err(Error::Revoked);
        }
        if !revocable {
            return Err(Error::NotRevocable);
        }
        let id = state.next_attachment;
        state.next_attachment += 1;
        state.attachments.push(AttachmentEntry { id, importer: Arc::downgrade(&importer) });
        drop(state);
        Ok(Attachment { buf: Arc::clone(self), id })
    }
}

impl Attachment {
    /// `dma_buf_map_attachment_unlocked()`—maps the buffer for the importer; takes `resv`.
    ///
    /// # Errors
    ///
    /// - `ENODEV` ([`Error::Revoked`]): the buffer is revoked.
    pub fn map(&self) -> Result<ImporterMapping, Error> {
        let mut resv = self.buf.resv();
        self.map_locked(&mut resv)
    }

    /// `dma_buf_map_attachment()`—maps the buffer; the caller holds `resv`.
    ///
    /// # Errors
    ///
    /// - `ENODEV` ([`Error::Revoked`]): the buffer is revoked.
    ///
    /// # Panics
    ///
    /// If `resv` is another buffer's lock.
    pub fn map_locked(&self, resv: &mut ResvGuard<'_>) -> Result<ImporterMapping, Error> {
        resv.assert_held_for(&self.buf);
        // Kernel: the exporter's map op refuses a revoked buffer under resv.
        if resv.status() != Status::Ok {
            return Err(Error::Revoked);
        }
        resv.state.importer_mappings += 1;
        Ok(ImporterMapping { buf: Arc::clone(&self.buf), attachment: self.id, mapped: true })
    }

    /// The attached buffer.
    #[must_use]
    pub fn buffer(&self) -> &Arc<DmaBuf> {
        &self.buf
    }

    /// The attachment's id, unique per buffer.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let mut state = self.buf.lock_state();
        state.attachments.retain(|entry| entry.id != self.id);
    }
}

impl ImporterMapping {
    /// The mapped ranges (the importer's sg table).
    #[must_use]
    pub fn ranges(&self) -> &[PhysVec] {
        self.buf.ranges()
    }

    /// The mapped buffer.
    #[must_use]
    pub fn buffer(&self) -> &Arc<DmaBuf> {
        &self.buf
    }

    /// Id of the attachment this mapping was made through.
    #[must_use]
    pub fn attachment_id(&self) -> u64 {
        self.attachment
    }

    /// `dma_buf_unmap_attachment_unlocked()`—unmaps; takes `resv`. Wakes a waiting revoke
    /// when this was the last importer mapping.
    pub fn unmap(mut self) {
        let mut state = self.buf.lock_state();
        unmap_state(&self.buf, &mut self.mapped, &mut state);
    }

    /// `dma_buf_unmap_attachment()`—unmaps; the caller holds `resv` (for instance inside
    /// [`Importer::invalidate_mappings`]).
    ///
    /// # Panics
    ///
    /// If `resv` is another buffer's lock.
    pub fn unmap_locked(mut self, resv: &mut ResvGuard<'_>) {
        resv.assert_held_for(&self.buf);
        unmap_state(&self.buf, &mut self.mapped, &mut resv.state);
    }
}

impl Drop for ImporterMapping {
    fn drop(&mut self) {
        if self.mapped {
            let mut state = self.buf.lock_state();
            unmap_state(&self.buf, &mut self.mapped, &mut state);
        }
    }
}

/// The unmap itself, with `resv` held (`state`). Kernel: the `kref_put()` in
/// exporter's unmap op, whose last put completes the revoke's completion.
fn unmap_state(buf: &DmaBuf, mapped: &mut bool, state: &mut ResvState) {
    if !*mapped {
        return;
    }
    *mapped = false;
    state.importer_mappings -= 1;
    if state.importer_mappings == 0 {
        buf.unmapped.notify_all();
    }
}
