//! Pooled `f32` tensor buffers.
//!
//! Every preprocessed image becomes a few hundred kilobytes (224²×3) to several megabytes
//! (800×1333×3) of `f32`. The buffers travel from the CPU pool through the batcher to a model
//! worker and come back here when the batch is done, so steady-state serving allocates none.

use std::sync::{Arc, Mutex, PoisonError};

/// A shared free-list of tensor buffers.
#[derive(Clone, Default)]
pub struct TensorPool {
    free: Arc<Mutex<Vec<Vec<f32>>>>,
}

/// Buffers kept at most; beyond it returned buffers are freed.
const MAX_POOLED: usize = 512;

impl TensorPool {
    /// Creates an empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// A zero-length buffer with at least `len` capacity, reused when one is free.
    fn take(&self, len: usize) -> Vec<f32> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let reuse = free
            .iter()
            .rposition(|b| b.capacity() >= len)
            .map(|i| free.swap_remove(i));
        drop(free);
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
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn give_back(&self, buf: Vec<f32>) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < MAX_POOLED {
            free.push(buf);
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
}
