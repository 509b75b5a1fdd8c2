//! Pooled `f32` tensor buffers.
//!
//! Every preprocessed image becomes a few hundred kilobytes (224²×3) to several megabytes
//! (800×1333×3) of `f32`. The buffers travel from the CPU pool through the batcher to a model
//! worker and come back here when the batch is done, so steady-state serving allocates none.

use std::sync::{Arc, Mutex, PoisonError};

/// A shared free-list of tensor buffers, bounded in bytes.
///
/// A buffer is reused only for a tensor that fills at least half of it, so a 224² crop never
/// holds on to a 12.8 MB detector buffer; idle buffers beyond the byte cap are freed, so after
/// a spike the pool shrinks back instead of keeping the spike's memory for good.
#[derive(Clone)]
pub struct TensorPool {
    inner: Arc<Mutex<Idle>>,
    max_idle_bytes: usize,
}

#[derive(Default)]
struct Idle {
    buffers: Vec<Vec<f32>>,
    bytes: usize,
}

/// Default cap on idle pooled bytes: enough for a few full detector batches.
pub const DEFAULT_MAX_IDLE_BYTES: usize = 256 << 20;

impl Default for TensorPool {
    fn default() -> Self {
        Self::with_max_idle_bytes(DEFAULT_MAX_IDLE_BYTES)
    }
}

fn bytes_of(buf: &Vec<f32>) -> usize {
    buf.capacity() * std::mem::size_of::<f32>()
}

impl TensorPool {
    /// Creates an empty pool with the default idle cap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an empty pool that keeps at most `max_idle_bytes` of idle buffers.
    pub fn with_max_idle_bytes(max_idle_bytes: usize) -> Self {
        Self {
            inner: Arc::default(),
            max_idle_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A zero-length buffer with at least `len` capacity, reused when one of a fitting size
    /// class (capacity `len..=2 * len`) is free.
    fn take(&self, len: usize) -> Vec<f32> {
        let mut idle = self.lock();
        let reuse = idle
            .buffers
            .iter()
            .rposition(|b| b.capacity() >= len && b.capacity() <= len.saturating_mul(2))
            .map(|i| idle.buffers.swap_remove(i));
        if let Some(b) = &reuse {
            idle.bytes -= bytes_of(b);
        }
        drop(idle);
        let mut buf = reuse.unwrap_or_else(|| Vec::with_capacity(len));
        buf.clear();
        buf
    }

    /// Builds a `[channels, height, width]` tensor by filling a pooled buffer with `fill`.
    pub fn tensor(&self, shape: [usize; 3], fill: impl FnOnce(&mut Vec<f32>)) -> PooledTensor {
        let mut data = self.take(shape.iter().product());
        fill(&mut data);
        PooledTensor {
            data,
            shape,
            pool: Some(self.clone()),
        }
    }

    /// Number of idle buffers (for tests and diagnostics).
    pub fn idle(&self) -> usize {
        self.lock().buffers.len()
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn give_back(&self, buf: Vec<f32>) {
        let size = bytes_of(&buf);
        let mut idle = self.lock();
        if idle.bytes + size <= self.max_idle_bytes {
            idle.bytes += size;
            idle.buffers.push(buf);
        }
    }
}

/// A `[C, H, W]` image tensor whose buffer returns to its pool on drop.
pub struct PooledTensor {
    data: Vec<f32>,
    shape: [usize; 3],
    pool: Option<TensorPool>,
}

impl PooledTensor {
    /// A tensor outside any pool (tests, one-off inputs such as warm-up).
    pub fn unpooled(shape: [usize; 3], data: Vec<f32>) -> Self {
        Self {
            data,
            shape,
            pool: None,
        }
    }

    /// `[channels, height, width]`.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The values, channel-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
}

impl Drop for PooledTensor {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(std::mem::take(&mut self.data));
        }
    }
}

impl std::fmt::Debug for PooledTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledTensor")
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused() {
        let pool = TensorPool::new();
        let t = pool.tensor([1, 2, 2], |d| d.extend_from_slice(&[1.0, 2.0, 3.0, 4.0]));
        let ptr = t.data().as_ptr();
        drop(t);
        assert_eq!(pool.idle(), 1);
        let t2 = pool.tensor([1, 1, 2], |d| d.extend_from_slice(&[5.0, 6.0]));
        assert_eq!(t2.data().as_ptr(), ptr);
        assert_eq!(t2.data(), &[5.0, 6.0]);
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn small_tensors_do_not_take_large_buffers() {
        let pool = TensorPool::new();
        drop(pool.tensor([3, 100, 100], |d| d.resize(30_000, 0.0)));
        let small = pool.tensor([3, 10, 10], |d| d.resize(300, 0.0));
        assert_eq!(
            pool.idle(),
            1,
            "the 30k buffer stays for a tensor of its size class"
        );
        assert!(small.data().len() == 300);
    }

    #[test]
    fn idle_buffers_are_capped_in_bytes() {
        let pool = TensorPool::with_max_idle_bytes(10_000 * 4);
        let tensors: Vec<_> = (0..5)
            .map(|_| pool.tensor([1, 50, 100], |d| d.resize(5_000, 0.0)))
            .collect();
        drop(tensors);
        assert_eq!(pool.idle(), 2);
        assert!(pool.idle_bytes() <= 40_000);
    }
}
